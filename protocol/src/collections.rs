//! `EntryMap` and `EntrySet`: a `Map` and a `Set` for keys Rust cannot hash.
//!
//! Serverpod allows `Map<K, V>` keys and `Set<T>` elements of any type: models, lists,
//! maps, `double`, nullable types. Rust's `HashMap`/`HashSet` need `Hash + Eq`, which
//! models (they may hold an `f64`) and `f64` itself lack. The generator uses these two
//! `Vec`-backed types for such keys instead: lookups compare with `PartialEq` (linear
//! time, fine for the handful of entries a message holds), entries keep their insertion
//! order, and two maps or sets are equal when they hold the same entries in any order.
//! Decoding one collects entries with those linear lookups, so a decoded value holds at
//! most [`MAX_DECODED_ENTRIES`]: a longer list from a peer is an error, not seconds of CPU.

/// The most entries an [`EntryMap`] or [`EntrySet`] decodes (4,096): collecting `n`
/// entries compares each with the ones before it, about `n²/2` comparisons.
pub const MAX_DECODED_ENTRIES: usize = 4096;

use std::fmt;

/// A map whose keys need only [`PartialEq`]: `Map<Model, V>`, `Map<double, V>`,
/// `Map<List<T>, V>` of a model file. Inserting an equal key replaces its value, as in
/// Dart.
///
/// ```
/// use streampod_protocol::types::EntryMap;
///
/// let mut weights: EntryMap<f64, &str> = EntryMap::new();
/// weights.insert(0.5, "half");
/// assert_eq!(weights.insert(0.5, "one half"), Some("half"));
/// assert_eq!(weights.get(&0.5), Some(&"one half"));
/// assert_eq!(weights.len(), 1);
/// ```
#[derive(Clone)]
pub struct EntryMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> EntryMap<K, V> {
    /// An empty map.
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// How many entries the map holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(key, value)| (key, value))
    }

    /// The keys in insertion order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().map(|(key, _)| key)
    }

    /// The values in insertion order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, value)| value)
    }
}

impl<K: PartialEq, V> EntryMap<K, V> {
    /// The value of the key equal to `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The value of the key equal to `key`, to change it.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Whether a key equal to `key` is present.
    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Sets the value of `key`, returning the value it replaced (the entry keeps its
    /// place), or appends a new entry.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.get_mut(&key) {
            Some(slot) => Some(std::mem::replace(slot, value)),
            None => {
                self.entries.push((key, value));
                None
            }
        }
    }

    /// Removes the entry of `key`, returning its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let index = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(index).1)
    }
}

impl<K, V> Default for EntryMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for EntryMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Equal when both hold the same entries, in any order.
impl<K: PartialEq, V: PartialEq> PartialEq for EntryMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl<K: PartialEq, V> FromIterator<(K, V)> for EntryMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = Self::new();
        map.extend(iter);
        map
    }
}

impl<K: PartialEq, V> Extend<(K, V)> for EntryMap<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (key, value) in iter {
            self.insert(key, value);
        }
    }
}

impl<K, V> IntoIterator for EntryMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

/// A set whose elements need only [`PartialEq`]: `Set<Model>`, `Set<double>`,
/// `Set<List<T>>` of a model file. Inserting an element equal to one present keeps the
/// first.
///
/// ```
/// use streampod_protocol::types::EntrySet;
///
/// let set: EntrySet<Vec<f64>> = [vec![1.0], vec![2.0], vec![1.0]].into_iter().collect();
/// assert_eq!(set.len(), 2);
/// assert!(set.contains(&vec![2.0]));
/// ```
#[derive(Clone)]
pub struct EntrySet<T> {
    items: Vec<T>,
}

impl<T> EntrySet<T> {
    /// An empty set.
    pub const fn new() -> Self {
        Self { items: Vec::new() }
    }

    /// How many elements the set holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the set holds no element.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The elements in insertion order.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }
}

impl<T: PartialEq> EntrySet<T> {
    /// Whether an element equal to `item` is present.
    pub fn contains(&self, item: &T) -> bool {
        self.items.contains(item)
    }

    /// Adds `item` unless an equal element is present; returns whether it was added.
    pub fn insert(&mut self, item: T) -> bool {
        if self.contains(&item) {
            return false;
        }
        self.items.push(item);
        true
    }

    /// Removes the element equal to `item`; returns whether there was one.
    pub fn remove(&mut self, item: &T) -> bool {
        match self.items.iter().position(|i| i == item) {
            Some(index) => {
                self.items.remove(index);
                true
            }
            None => false,
        }
    }
}

impl<T> Default for EntrySet<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: fmt::Debug> fmt::Debug for EntrySet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Equal when both hold the same elements, in any order.
impl<T: PartialEq> PartialEq for EntrySet<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|item| other.contains(item))
    }
}

impl<T: PartialEq> FromIterator<T> for EntrySet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut set = Self::new();
        set.extend(iter);
        set
    }
}

impl<T: PartialEq> Extend<T> for EntrySet<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        for item in iter {
            self.insert(item);
        }
    }
}

impl<T> IntoIterator for EntrySet<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

impl<'a, T> IntoIterator for &'a EntrySet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_replace_in_place_and_compare_without_order() {
        let mut map: EntryMap<Vec<i64>, &str> = EntryMap::new();
        assert_eq!(map.insert(vec![1], "a"), None);
        assert_eq!(map.insert(vec![2], "b"), None);
        assert_eq!(map.insert(vec![1], "c"), Some("a"));
        assert_eq!(map.keys().collect::<Vec<_>>(), [&vec![1], &vec![2]]);
        let reversed: EntryMap<_, _> = [(vec![2], "b"), (vec![1], "c")].into_iter().collect();
        assert_eq!(map, reversed);
        assert_eq!(map.remove(&vec![2]), Some("b"));
        assert_ne!(map, reversed);
        assert!(!map.contains_key(&vec![2]));
    }

    #[test]
    fn sets_keep_the_first_of_equal_elements() {
        let mut set = EntrySet::new();
        assert!(set.insert(1.5));
        assert!(!set.insert(1.5));
        assert!(set.insert(f64::NAN));
        // NaN equals nothing, not even itself: each NaN is a new element.
        assert!(set.insert(f64::NAN));
        assert_eq!(set.len(), 3);
        assert!(set.remove(&1.5));
        assert!(!set.contains(&1.5));
    }
}
