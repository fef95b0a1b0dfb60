//! Type probes the `#[endpoint]` macro's expansion uses to learn, at compile time,
//! the wire names of a method's argument, return and exception types.



use super::error::IntoMethodError;
use crate::protocol::wire::WireValue;


/// Reads a type's [`WireValue::model_type`] and [`IntoMethodError::exception_class`] for
/// the method schema without demanding the traits: a type that lacks them is already
/// reported where the call decodes or answers it, once (autoref specialization: the
/// `…Fallback` traits apply only when the real impls do not).
#[doc(hidden)]
#[derive(Debug)]
pub struct TypeProbe<T>(std::marker::PhantomData<T>);

impl<T> TypeProbe<T> {
    /// A probe of `T`.
    pub fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<T> Default for TypeProbe<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// The real reads, for types with the traits.
#[doc(hidden)]
pub trait ProbeTypes {
    /// `T::model_type()`.
    fn model_type(&self) -> String;
    /// `T::exception_class()`.
    fn exception_class(&self) -> Option<&'static str>;
}

impl<T: WireValue> ProbeTypes for TypeProbe<T> {
    fn model_type(&self) -> String {
        T::model_type()
    }

    fn exception_class(&self) -> Option<&'static str> {
        None
    }
}

/// The fallback reads, for a type without [`WireValue`] (a program that does not compile).
#[doc(hidden)]
pub trait ProbeTypesFallback {
    /// Empty.
    fn model_type(&self) -> String;
    /// `None`.
    fn exception_class(&self) -> Option<&'static str>;
}

impl<T> ProbeTypesFallback for &TypeProbe<T> {
    fn model_type(&self) -> String {
        String::new()
    }

    fn exception_class(&self) -> Option<&'static str> {
        None
    }
}

/// An error type's exception class, for the method schema (see [`TypeProbe`]).
#[doc(hidden)]
#[derive(Debug)]
pub struct ErrorProbe<E>(std::marker::PhantomData<E>);

impl<E> ErrorProbe<E> {
    /// A probe of `E`.
    pub fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<E> Default for ErrorProbe<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: IntoMethodError> ProbeTypes for ErrorProbe<E> {
    fn model_type(&self) -> String {
        String::new()
    }

    fn exception_class(&self) -> Option<&'static str> {
        E::exception_class()
    }
}

impl<E> ProbeTypesFallback for &ErrorProbe<E> {
    fn model_type(&self) -> String {
        String::new()
    }

    fn exception_class(&self) -> Option<&'static str> {
        None
    }
}
