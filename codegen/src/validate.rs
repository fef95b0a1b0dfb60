//! Model files → validated [`ModelSet`]. Every problem becomes a diagnostic; checking goes
//! on after an error so one run reports all of them.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::defaults::{self, DefaultValue};
use crate::diagnostic::{did_you_mean, Diagnostics, Pos, SourceFile};
use crate::external::{ExternalModels, Qualifier};
use crate::ir::{
    Enum, EnumProperty, EnumValue, Family, Field, Model, ModelKind, ModelSet, Record, Scalar,
    Scope, Type,
};
use crate::types::{self, TypeExpr, TypeKind};
use crate::yaml::{self, Entry, Node, Value};

/// Keys that only matter to Serverpod's database layer: accepted, warned about, ignored.
const DATABASE_KEYS: [&str; 5] = [
    "table",
    "managedMigration",
    "indexes",
    "database",
    "serializationDataType",
];
/// Field options that only matter to the database layer.
const DATABASE_OPTIONS: [&str; 9] = [
    "relation",
    "persist",
    "!persist",
    "column",
    "parent",
    "defaultPersist",
    "api",
    "serializationDataType",
    "unique",
];
const FIELD_OPTIONS: [&str; 6] = [
    "default",
    "defaultModel",
    "scope",
    "jsonKey",
    "required",
    "tail",
];
/// Names a model may not take: they are generated, scalar or Rust prelude names.
const RESERVED_NAMES: [&str; 13] = [
    "Protocol", "List", "Set", "Map", "Option", "Result", "Vec", "Box", "Some", "None", "Ok",
    "Err", "Self",
];

/// Validates every file and returns what could be built; errors are in `diagnostics`.
pub(crate) fn validate(
    files: &[SourceFile],
    externals: &[ExternalModels],
    diagnostics: &mut Diagnostics,
) -> ModelSet {
    let (declarations, broken) = read_declarations_and_broken(files, diagnostics);
    let externals = externals.iter().map(ExternalIndex::new).collect();
    let mut resolver = Resolver::new(files, &declarations, diagnostics);
    resolver.externals = externals;
    resolver.broken = broken;
    resolver.resolve()
}

fn read_declarations(files: &[SourceFile], diagnostics: &mut Diagnostics) -> Vec<Declaration> {
    read_declarations_and_broken(files, diagnostics).0
}

/// The declarations, and the names of the files that failed to give one: their types
/// are not reported again as unknown where other files use them.
fn read_declarations_and_broken(
    files: &[SourceFile],
    diagnostics: &mut Diagnostics,
) -> (Vec<Declaration>, HashSet<String>) {
    let mut declarations = Vec::new();
    let mut broken = HashSet::new();
    for (file_index, file) in files.iter().enumerate() {
        let declaration = match yaml::parse(file) {
            Ok(root) => read_declaration(file_index, file, &root, diagnostics),
            Err(diagnostic) => {
                diagnostics.push(diagnostic);
                None
            }
        };
        match declaration {
            Some(declaration) => declarations.push(declaration),
            None => broken.extend(yaml::declared_name(&file.text)),
        }
    }
    (declarations, broken)
}

/// What this run needs to know of another crate's types: each name's Rust path and
/// whether it is an enum.
struct ExternalIndex {
    qualifier: Qualifier,
    types: HashMap<String, Type>,
    /// Each class's fields (its ancestors' included), for a class here that extends it.
    fields: HashMap<String, Vec<Field>>,
}

impl ExternalIndex {
    /// Reads another crate's model files. Their errors are that crate's build's to
    /// report (a file that is no model, say); a type that could not be read is reported
    /// here only where this run's files use it.
    fn new(external: &ExternalModels) -> Self {
        let mut ignored = Diagnostics::default();
        let declarations = read_declarations(&external.files, &mut ignored);
        let prefix = external.rust_path.trim_end_matches("::").to_owned();
        // Resolving the other crate's models gives each class's flattened fields, for a
        // class here that extends one of them.
        let set = Resolver::new(&external.files, &declarations, &mut ignored).resolve();
        let families: HashMap<&str, &Family> =
            set.families.iter().map(|f| (f.name.as_str(), f)).collect();
        let path_of = |name: &str| match families.get(name) {
            Some(family) => format!("{prefix}::{}", family.rust_name()),
            None => format!("{prefix}::{name}"),
        };
        let enums: HashSet<&str> = set.enums.iter().map(|e| e.name.as_str()).collect();
        let mut types: HashMap<String, Type> = declarations
            .iter()
            .map(|d| {
                let is_enum = enums.contains(d.name.as_str());
                let path = path_of(&d.name);
                (d.name.clone(), Type::External { path, is_enum })
            })
            .collect();
        types.retain(|name, _| {
            enums.contains(name.as_str())
                || families.contains_key(name.as_str())
                || set.models.iter().any(|m| m.name == *name)
        });
        let fields =
            set.models
                .iter()
                .map(|model| {
                    let fields = model
                        .fields
                        .iter()
                        .map(|field| Field {
                            ty: qualify(&field.ty, &path_of, &enums),
                            // Its default is the other crate's to apply; here it is only
                            // known to exist when it is a plain value.
                            default: field.default.clone().filter(|d| {
                                !matches!(d, crate::defaults::DefaultValue::EnumValue(_))
                            }),
                            ..field.clone()
                        })
                        .collect();
                    (model.name.clone(), fields)
                })
                .collect();
        Self {
            qualifier: external.qualifier.clone(),
            types,
            fields,
        }
    }
}

/// `ty` as seen from another crate: its own models and enums become paths into it.
fn qualify(ty: &Type, path_of: &dyn Fn(&str) -> String, enums: &HashSet<&str>) -> Type {
    let again = |inner: &Type| Box::new(qualify(inner, path_of, enums));
    match ty {
        Type::Model(name) | Type::Family(name) | Type::Enum(name) => Type::External {
            path: path_of(name),
            is_enum: enums.contains(name.as_str()),
        },
        Type::List(inner) => Type::List(again(inner)),
        Type::Set(inner) => Type::Set(again(inner)),
        Type::Option(inner) => Type::Option(again(inner)),
        Type::Map(key, value) => Type::Map(again(key), again(value)),
        Type::Record(record) => {
            let mut record = (**record).clone();
            for (_, item) in &mut record.positional {
                *item = qualify(item, path_of, enums);
            }
            for (_, _, item) in &mut record.named {
                *item = qualify(item, path_of, enums);
            }
            Type::Record(Box::new(record))
        }
        Type::Scalar(_) | Type::External { .. } => ty.clone(),
    }
}

/// One file's top-level declaration, with field types parsed but not resolved.
struct Declaration {
    file: usize,
    name: String,
    name_pos: Pos,
    docs: Vec<String>,
    server_only: bool,
    body: Body,
}

enum Body {
    Model {
        kind: ModelKind,
        fields: Vec<RawField>,
        /// `extends: Parent`, with the position of the parent's name.
        extends: Option<(String, Pos)>,
        /// `sealed: true`: abstract, decoded as one of its descendants.
        sealed: bool,
    },
    Enum(Enum),
}

struct RawField {
    name: String,
    key_pos: Pos,
    value_pos: Pos,
    docs: Vec<String>,
    ty: TypeExpr,
    default: Option<(String, Pos)>,
    scope: Scope,
    json_key: Option<String>,
    /// `tail`: an inherited field that goes after the child's own fields.
    tail: bool,
}

fn read_declaration(
    file_index: usize,
    file: &SourceFile,
    root: &Node,
    diagnostics: &mut Diagnostics,
) -> Option<Declaration> {
    let Value::Map(entries) = &root.value else {
        diagnostics.push(file.error(
            root.pos,
            "a model file is a mapping with 'class:', 'exception:' or 'enum:'",
        ));
        return None;
    };
    let kinds: Vec<&Entry> = entries
        .iter()
        .filter(|e| matches!(e.key.as_str(), "class" | "exception" | "enum"))
        .collect();
    let head = match kinds.as_slice() {
        [head] => *head,
        [] => {
            diagnostics.push(file.error(
                root.pos,
                "missing 'class:', 'exception:' or 'enum:' naming the model",
            ));
            return None;
        }
        [_, second, ..] => {
            diagnostics.push(file.error(
                second.key_pos,
                "a model file declares one model; found a second 'class:', 'exception:' or 'enum:'",
            ));
            return None;
        }
    };
    let name = scalar(
        file,
        &head.value,
        &format!("'{}' needs a name", head.key),
        diagnostics,
    )?;
    check_type_name(file, &name, head.value.pos, diagnostics);
    let docs = head.docs.clone();

    let allowed: &[&str] = match head.key.as_str() {
        "class" => &[
            "class",
            "fields",
            "serverOnly",
            "immutable",
            "extends",
            "sealed",
        ],
        "exception" => &["exception", "fields", "serverOnly", "extends", "sealed"],
        _ => &[
            "enum",
            "values",
            "serialized",
            "default",
            "serverOnly",
            "properties",
        ],
    };
    let mut server_only = false;
    let (mut extends, mut sealed) = (None, false);
    for entry in entries {
        let key = entry.key.as_str();
        if allowed.contains(&key) {
            match key {
                "serverOnly" => server_only = flag(file, entry, diagnostics),
                "sealed" => sealed = flag(file, entry, diagnostics),
                "extends" => {
                    let parent = scalar(
                        file,
                        &entry.value,
                        "'extends' names the parent class",
                        diagnostics,
                    );
                    extends = parent.map(|name| (name, entry.value.pos));
                }
                "immutable" => {
                    // Rust values are immutable unless bound `mut`; equality is derived anyway.
                    flag(file, entry, diagnostics);
                }
                _ => {}
            }
        } else if DATABASE_KEYS.contains(&key) {
            diagnostics.push(file.warning(
                entry.key_pos,
                format!(
                    "'{key}' is a database key; streampod has no database layer and ignores it"
                ),
            ));
        } else {
            let known = allowed.iter().chain(DATABASE_KEYS.iter()).copied();
            diagnostics.push(file.error(
                entry.key_pos,
                format!(
                    "unknown key '{key}' in a {} file{}",
                    head.key,
                    did_you_mean(key, known)
                ),
            ));
        }
    }
    let find = |key: &str| entries.iter().find(|e| e.key == key);

    let body = if head.key == "enum" {
        let properties = read_enum_properties(file, find("properties"), diagnostics);
        let mut e = read_enum(
            file,
            &name,
            docs.clone(),
            find("values"),
            find("serialized"),
            find("default"),
            diagnostics,
        )?;
        e.properties = properties;
        check_enum_property_values(file, &mut e, find("values"), diagnostics);
        Body::Enum(e)
    } else {
        let kind = if head.key == "class" {
            ModelKind::Class
        } else {
            ModelKind::Exception
        };
        let fields = match find("fields").map(|e| &e.value) {
            None
            | Some(Node {
                value: Value::Null, ..
            }) => Vec::new(),
            Some(Node {
                value: Value::Map(fields),
                ..
            }) => fields
                .iter()
                .filter_map(|f| read_field(file, f, diagnostics))
                .collect(),
            Some(other) => {
                diagnostics.push(file.error(
                    other.pos,
                    format!(
                        "'fields' must be a mapping of name: Type, found {}",
                        other.describe()
                    ),
                ));
                Vec::new()
            }
        };
        Body::Model {
            kind,
            fields,
            extends,
            sealed,
        }
    };
    Some(Declaration {
        file: file_index,
        name,
        name_pos: head.value.pos,
        docs,
        server_only,
        body,
    })
}

fn scalar(
    file: &SourceFile,
    node: &Node,
    missing: &str,
    diagnostics: &mut Diagnostics,
) -> Option<String> {
    match &node.value {
        Value::Scalar(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
        _ => {
            diagnostics.push(file.error(node.pos, missing));
            None
        }
    }
}

fn flag(file: &SourceFile, entry: &Entry, diagnostics: &mut Diagnostics) -> bool {
    match &entry.value.value {
        Value::Scalar(text) if text == "true" => true,
        Value::Scalar(text) if text == "false" => false,
        _ => {
            diagnostics.push(file.error(
                entry.value.pos,
                format!("'{}' must be true or false", entry.key),
            ));
            false
        }
    }
}

fn is_type_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
}

fn check_type_name(file: &SourceFile, name: &str, pos: Pos, diagnostics: &mut Diagnostics) {
    if !is_type_name(name) {
        diagnostics.push(file.error(
            pos,
            format!("invalid name '{name}': model and enum names are UpperCamelCase letters and digits, like 'ChatMessage'"),
        ));
    } else if RESERVED_NAMES.contains(&name)
        || Scalar::from_name(name).is_some()
        || types::VECTORS.contains(&name)
    {
        diagnostics.push(file.error(
            pos,
            format!(
                "'{name}' is reserved (a built-in or generated type name); choose another name"
            ),
        ));
    }
}

#[allow(clippy::too_many_arguments)] // One parameter per enum key; bundling them adds nothing.
fn read_enum(
    file: &SourceFile,
    name: &str,
    docs: Vec<String>,
    values: Option<&Entry>,
    serialized: Option<&Entry>,
    default: Option<&Entry>,
    diagnostics: &mut Diagnostics,
) -> Option<Enum> {
    let Some(values) = values else {
        diagnostics.push(file.error(
            Pos::new(1, 1, 1),
            format!("enum '{name}' needs 'values:' with at least one value"),
        ));
        return None;
    };
    let Value::Seq(items) = &values.value.value else {
        diagnostics.push(file.error(
            values.value.pos,
            "'values' must be a list of names ('- hearts')",
        ));
        return None;
    };
    if items.is_empty() {
        diagnostics.push(file.error(
            values.key_pos,
            format!("enum '{name}' needs at least one value"),
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    let mut seen: HashMap<String, String> = HashMap::new();
    for item in items {
        let value = match &item.value {
            Value::Scalar(value) => value,
            // `- one:` with the value's properties below it.
            Value::Map(entries) if entries.len() == 1 => &entries[0].key,
            _ => {
                diagnostics.push(file.error(
                    item.pos,
                    "enum values are plain names, or 'name:' followed by its properties",
                ));
                continue;
            }
        };
        let valid = value.starts_with(|c: char| c.is_ascii_alphabetic())
            && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            diagnostics.push(file.error(item.pos, format!("invalid enum value '{value}': use letters, digits and '_', starting with a letter")));
            continue;
        }
        let variant = pascal_case(value);
        let variant = if variant == "Self" {
            "Self_".to_owned()
        } else {
            variant
        };
        if let Some(previous) = seen.insert(variant.clone(), value.clone()) {
            let message = if previous == *value {
                format!("duplicate enum value '{value}'")
            } else {
                format!("enum values '{previous}' and '{value}' both become the Rust variant '{variant}'; rename one")
            };
            diagnostics.push(file.error(item.pos, message));
            continue;
        }
        out.push(EnumValue {
            name: value.clone(),
            variant,
            docs: item.docs.clone(),
            properties: Vec::new(),
        });
    }
    let by_index = match serialized.map(|e| (&e.value.value, e.value.pos)) {
        None => false,
        Some((Value::Scalar(s), _)) if s == "byName" => false,
        Some((Value::Scalar(s), _)) if s == "byIndex" => true,
        Some((_, pos)) => {
            diagnostics.push(file.error(pos, "'serialized' is byName or byIndex"));
            false
        }
    };
    let fallback = default.and_then(|entry| {
        let text = scalar(
            file,
            &entry.value,
            "'default' names the value unknown values decode to",
            diagnostics,
        )?;
        let found = out.iter().position(|v| v.name == text);
        if found.is_none() {
            diagnostics.push(file.error(
                entry.value.pos,
                format!(
                    "default '{text}' is not a value of enum '{name}'{}",
                    did_you_mean(&text, out.iter().map(|v| v.name.as_str()))
                ),
            ));
        }
        found
    });
    Some(Enum {
        name: name.to_owned(),
        docs,
        properties: Vec::new(),
        values: out,
        by_index,
        fallback,
        file: file.path.clone(),
    })
}

/// `properties:` of an enhanced enum: `name: Type` with an optional `default=`; the
/// types are scalars.
fn read_enum_properties(
    file: &SourceFile,
    properties: Option<&Entry>,
    diagnostics: &mut Diagnostics,
) -> Vec<EnumProperty> {
    let entries = match properties.map(|p| &p.value) {
        None
        | Some(Node {
            value: Value::Null, ..
        }) => return Vec::new(),
        Some(Node {
            value: Value::Map(entries),
            ..
        }) => entries,
        Some(other) => {
            diagnostics.push(file.error(
                other.pos,
                "'properties' is a mapping of name: Type, like 'description: String'",
            ));
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Some(raw) = read_field(file, entry, diagnostics) else {
            continue;
        };
        let pos = raw.value_pos.shifted(raw.ty.offset, raw.ty.len);
        let scalar = match &raw.ty.kind {
            TypeKind::Named(name) => Scalar::from_name(name),
            _ => None,
        };
        let Some(scalar) = scalar else {
            diagnostics.push(file.error(
                pos,
                "an enum property is a scalar: bool, int, double, String, DateTime, Duration, UuidValue, Uri or BigInt",
            ));
            continue;
        };
        let default =
            raw.default
                .and_then(|(text, pos)| match defaults::parse_scalar(scalar, &text) {
                    Ok(value) => Some(value),
                    Err(message) => {
                        diagnostics.push(file.error(pos, message));
                        None
                    }
                });
        let ty = Type::Scalar(scalar);
        out.push(EnumProperty {
            rust_name: rust_field_name(&raw.name),
            name: raw.name,
            ty: if raw.ty.nullable {
                Type::Option(Box::new(ty))
            } else {
                ty
            },
            default,
            docs: raw.docs,
        });
    }
    out
}

/// Reads each value's properties (`- one:` then `description: 'First'`), checked
/// against the enum's `properties:`.
fn check_enum_property_values(
    file: &SourceFile,
    e: &mut Enum,
    values: Option<&Entry>,
    diagnostics: &mut Diagnostics,
) {
    let Some(Value::Seq(items)) = values.map(|v| &v.value.value) else {
        return;
    };
    let given: HashMap<&str, (&Node, Pos)> = items
        .iter()
        .filter_map(|item| match &item.value {
            Value::Map(entries) if entries.len() == 1 => Some((
                entries[0].key.as_str(),
                (&entries[0].value, entries[0].key_pos),
            )),
            Value::Scalar(name) => Some((name.as_str(), (item, item.pos))),
            _ => None,
        })
        .collect();
    for value in &mut e.values {
        let Some(&(node, key_pos)) = given.get(value.name.as_str()) else {
            continue;
        };
        let supplied: &[Entry] = match &node.value {
            Value::Map(entries) => entries,
            _ => &[],
        };
        for entry in supplied {
            if !e.properties.iter().any(|p| p.name == entry.key) {
                let known = e.properties.iter().map(|p| p.name.as_str());
                diagnostics.push(file.error(
                    entry.key_pos,
                    format!(
                        "'{}' is not a property of enum '{}'{}",
                        entry.key,
                        e.name,
                        did_you_mean(&entry.key, known)
                    ),
                ));
            }
        }
        value.properties = e
            .properties
            .iter()
            .map(|property| {
                let Some(entry) = supplied.iter().find(|s| s.key == property.name) else {
                    if property.default.is_none() && !matches!(property.ty, Type::Option(_)) {
                        diagnostics.push(file.error(
                            key_pos,
                            format!(
                                "enum value '{}' needs its '{}' property (or give the property a default)",
                                value.name, property.name
                            ),
                        ));
                    }
                    return property.default.clone();
                };
                let text = match &entry.value.value {
                    Value::Scalar(text) => text.clone(),
                    Value::Null => return None,
                    _ => {
                        diagnostics.push(file.error(entry.value.pos, "a property value is a scalar"));
                        return None;
                    }
                };
                let Type::Scalar(scalar) = property.ty.non_null() else {
                    return None;
                };
                // YAML has already taken the quotes off: put them back where the
                // default syntax needs them.
                let text = match scalar {
                    Scalar::String | Scalar::Uri | Scalar::BigInt => format!("'{text}'"),
                    Scalar::Uuid if !text.starts_with("random") => format!("'{text}'"),
                    _ => text,
                };
                match defaults::parse_scalar(*scalar, &text) {
                    Ok(parsed) => Some(parsed),
                    Err(message) => {
                        diagnostics.push(file.error(entry.value.pos, message));
                        None
                    }
                }
            })
            .collect();
    }
}

fn read_field(file: &SourceFile, entry: &Entry, diagnostics: &mut Diagnostics) -> Option<RawField> {
    let name = entry.key.clone();
    let valid_name = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        diagnostics.push(file.error(
            entry.key_pos,
            format!("invalid field name '{name}': start with a lowercase letter and use letters, digits and '_'"),
        ));
    }
    let Value::Scalar(text) = &entry.value.value else {
        diagnostics.push(file.error(
            entry.value.pos,
            format!("field '{name}' needs a type, like '{name}: String'"),
        ));
        return None;
    };
    let value_pos = entry.value.pos;
    let parts = split_top_level(text);
    let (type_offset, type_text) = parts.first().copied().unwrap_or((0, ""));
    let ty = match types::parse(type_text) {
        Ok(ty) => TypeExpr {
            offset: ty.offset + type_offset,
            ..ty
        },
        Err(e) => {
            diagnostics
                .push(file.error(value_pos.shifted(type_offset + e.offset, e.len), e.message));
            return None;
        }
    };
    let mut field = RawField {
        name,
        key_pos: entry.key_pos,
        value_pos,
        docs: entry.docs.clone(),
        ty,
        default: None,
        scope: Scope::All,
        json_key: None,
        tail: false,
    };
    let mut required = None;
    // `default=` is the model's and the database's default, `defaultModel=` the model's
    // alone, so it wins when both are given.
    let (mut default_all, mut default_model) = (None, None);
    let last = parts.len().saturating_sub(1);
    for (index, &(offset, option)) in parts.iter().enumerate().skip(1) {
        let pos = value_pos.shifted(offset, option.chars().count().max(1));
        if option.is_empty() {
            if index != last {
                diagnostics.push(file.error(pos, "empty option between two commas"));
            }
            // A trailing comma after the type or the last option is allowed.
            continue;
        }
        let (key, value) = option_parts(option);
        let bare_key = key.split('(').next().unwrap_or(key).trim();
        match (key, value) {
            ("default" | "defaultModel", Some(value)) => {
                let slot = if key == "default" {
                    &mut default_all
                } else {
                    &mut default_model
                };
                if slot.is_some() {
                    diagnostics.push(file.error(pos, format!("'{key}' is given twice")));
                }
                *slot = Some((value.to_owned(), pos));
            }
            ("tail", None) => field.tail = true,
            ("scope", Some("all")) => field.scope = Scope::All,
            ("scope", Some("serverOnly")) => field.scope = Scope::ServerOnly,
            ("scope", Some("none")) => field.scope = Scope::None,
            ("scope", Some(other)) => {
                diagnostics.push(file.error(pos, format!("scope is all, serverOnly or none, not '{other}'")));
            }
            ("jsonKey", Some(value)) if !value.is_empty() => {
                let value = value.trim_matches(['\'', '"']);
                if value == "__className__" {
                    diagnostics.push(file.error(pos, "jsonKey '__className__' is reserved for the class name"));
                }
                field.json_key = Some(value.to_owned());
            }
            ("required", None) => required = Some(pos),
            ("database", None) => diagnostics.push(file.error(
                pos,
                "'database' (deprecated) keeps a field off the wire; write scope=serverOnly",
            )),
            _ if DATABASE_OPTIONS.contains(&bare_key) => diagnostics.push(file.warning(
                pos,
                format!("'{bare_key}' is a database option; streampod has no database layer and ignores it"),
            )),
            (key, _) if FIELD_OPTIONS.contains(&key) => {
                diagnostics.push(file.error(pos, format!("option '{key}' {}", option_usage(key))));
            }
            (key, _) => diagnostics.push(file.error(
                pos,
                format!(
                    "unknown field option '{key}'{}",
                    did_you_mean(key, FIELD_OPTIONS.iter().chain(DATABASE_OPTIONS.iter()).copied())
                ),
            )),
        }
    }
    field.default = default_model.or(default_all);
    if let Some(pos) = required.filter(|_| !field.ty.nullable) {
        diagnostics.push(file.error(
            pos,
            "'required' only applies to nullable fields; non-nullable fields are always required",
        ));
    }
    if field.scope != Scope::All && !field.ty.nullable {
        diagnostics.push(file.error(
            field.value_pos.shifted(field.ty.offset, field.ty.len),
            format!(
                "field '{}' has a restricted scope and so must be nullable: '{}?'",
                field.name,
                type_text.trim()
            ),
        ));
    }
    Some(field)
}

fn option_usage(key: &str) -> &'static str {
    match key {
        "default" | "defaultModel" => "needs a value: default=5",
        "scope" => "needs a value: scope=serverOnly",
        "jsonKey" => "needs a value: jsonKey=name",
        _ => "takes no value",
    }
}

/// `key=value` → (`key`, `Some(value)`), `key` → (`key`, `None`); an `=` inside
/// parentheses (`unique(per=category)`) belongs to the key.
fn option_parts(option: &str) -> (&str, Option<&str>) {
    let paren = option.find('(').unwrap_or(option.len());
    match option.find('=').filter(|&at| at < paren) {
        Some(at) => (option[..at].trim(), Some(option[at + 1..].trim())),
        None => (option.trim(), None),
    }
}

/// Splits at commas outside `<>`, `()` and quotes; each part is trimmed and paired with
/// its character offset.
fn split_top_level(text: &str) -> Vec<(usize, &str)> {
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut start) = (0_i32, None, 0);
    for (byte, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, '<' | '(') => depth += 1,
            (None, '>' | ')') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push((start, byte));
                start = byte + 1;
            }
            _ => {}
        }
    }
    parts.push((start, text.len()));
    parts
        .into_iter()
        .map(|(from, to)| {
            let raw = &text[from..to];
            let trimmed = raw.trim();
            let lead = raw.len() - raw.trim_start().len();
            (text[..from + lead].chars().count(), trimmed)
        })
        .collect()
}

/// Resolves names across files and checks what needs the whole set.
struct Resolver<'a> {
    files: &'a [SourceFile],
    declarations: &'a [Declaration],
    diagnostics: &'a mut Diagnostics,
    /// Names of the classes with descendants or `sealed: true`.
    families: HashSet<String>,
    /// Other crates' types: modules and shared packages.
    externals: Vec<ExternalIndex>,
    /// The fields a class inherits from a parent in another crate.
    external_parents: HashMap<usize, Vec<Field>>,
    /// Names declared by files that failed to read: already reported there.
    broken: HashSet<String>,
}

impl<'a> Resolver<'a> {
    fn new(
        files: &'a [SourceFile],
        declarations: &'a [Declaration],
        diagnostics: &'a mut Diagnostics,
    ) -> Self {
        Self {
            files,
            declarations,
            diagnostics,
            families: HashSet::new(),
            externals: Vec::new(),
            external_parents: HashMap::new(),
            broken: HashSet::new(),
        }
    }

    fn resolve(mut self) -> ModelSet {
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut unique = Vec::new();
        for (index, declaration) in self.declarations.iter().enumerate() {
            match names.get(&declaration.name) {
                Some(&first) => {
                    let first = &self.declarations[first];
                    let message = format!(
                        "'{}' is already defined at {}:{}:{}",
                        declaration.name,
                        self.files[first.file].path.display(),
                        first.name_pos.line,
                        first.name_pos.column
                    );
                    self.diagnostics
                        .push(self.files[declaration.file].error(declaration.name_pos, message));
                }
                None => {
                    names.insert(declaration.name.clone(), index);
                    unique.push(index);
                }
            }
        }

        let parents = self.parents(&unique, &names);
        let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
        for &index in &unique {
            if let Some(&parent) = parents.get(&index) {
                children.entry(parent).or_default().push(index);
            }
        }
        let families: HashSet<String> = unique
            .iter()
            .filter(|&&i| {
                children.contains_key(&i)
                    || matches!(self.declarations[i].body, Body::Model { sealed: true, .. })
            })
            .map(|&i| self.declarations[i].name.clone())
            .collect();
        self.families = families;

        let mut own_fields: HashMap<usize, Vec<(Field, bool)>> = HashMap::new();
        for &index in &unique {
            let declaration = &self.declarations[index];
            if let Body::Model { fields, .. } = &declaration.body {
                let resolved = fields
                    .iter()
                    .filter_map(|raw| {
                        let field = self.resolve_field(declaration, raw, &names)?;
                        Some((field, raw.tail))
                    })
                    .collect();
                own_fields.insert(index, resolved);
            }
        }

        let mut set = ModelSet::default();
        let declarations = self.declarations;
        for &index in &unique {
            let declaration = &declarations[index];
            match &declaration.body {
                Body::Enum(e) => set.enums.push(Enum {
                    docs: declaration.docs.clone(),
                    ..e.clone()
                }),
                Body::Model { kind, sealed, .. } => {
                    let fields = self.inherited_fields(index, &parents, &own_fields);
                    let fields = self.check_rust_names(declaration, fields);
                    if children.contains_key(&index) || *sealed {
                        let mut members = Vec::new();
                        if !sealed {
                            members.push(declaration.name.clone());
                        }
                        let mut pending = children.get(&index).cloned().unwrap_or_default();
                        pending.sort_unstable();
                        let mut queue = std::collections::VecDeque::from(pending);
                        while let Some(child) = queue.pop_front() {
                            let child_decl = &declarations[child];
                            if !matches!(child_decl.body, Body::Model { sealed: true, .. }) {
                                members.push(child_decl.name.clone());
                            }
                            let mut grandchildren =
                                children.get(&child).cloned().unwrap_or_default();
                            grandchildren.sort_unstable();
                            queue.extend(grandchildren);
                        }
                        set.families.push(Family {
                            name: declaration.name.clone(),
                            sealed: *sealed,
                            members,
                            docs: declaration.docs.clone(),
                            file: self.files[declaration.file].path.clone(),
                        });
                    }
                    if *sealed {
                        // Abstract: only its descendants have values.
                        continue;
                    }
                    set.models.push(Model {
                        name: declaration.name.clone(),
                        kind: *kind,
                        docs: declaration.docs.clone(),
                        fields,
                        server_only: declaration.server_only,
                        file: self.files[declaration.file].path.clone(),
                    });
                }
            }
        }
        self.box_cycles(&mut set, &names);
        set
    }

    /// Each model's parent (`extends:`), checked: the parent exists, is a model of the
    /// same kind, and no class is its own ancestor.
    fn parents(
        &mut self,
        unique: &[usize],
        names: &HashMap<String, usize>,
    ) -> HashMap<usize, usize> {
        let mut parents = HashMap::new();
        for &index in unique {
            let declaration = &self.declarations[index];
            let Body::Model {
                kind,
                extends: Some((parent, pos)),
                ..
            } = &declaration.body
            else {
                continue;
            };
            let message = match names.get(parent).map(|&i| (i, &self.declarations[i].body)) {
                Some((
                    parent_index,
                    Body::Model {
                        kind: parent_kind, ..
                    },
                )) if parent_kind == kind => {
                    parents.insert(index, parent_index);
                    continue;
                }
                Some((_, Body::Model { .. })) => {
                    format!("'{}' cannot extend '{parent}': a class extends a class and an exception an exception", declaration.name)
                }
                Some((_, Body::Enum(_))) => {
                    format!("'{parent}' is an enum; only classes and exceptions can be extended")
                }
                None => {
                    let inherited = self
                        .externals
                        .iter()
                        .find_map(|e| e.fields.get(parent.as_str()));
                    if let Some(inherited) = inherited {
                        self.external_parents.insert(index, inherited.clone());
                        continue;
                    }
                    if self.broken.contains(parent) {
                        continue;
                    }
                    let candidates = names.keys().map(String::as_str);
                    format!(
                        "unknown parent class '{parent}'{}",
                        did_you_mean(parent, candidates)
                    )
                }
            };
            self.diagnostics
                .push(self.files[declaration.file].error(*pos, message));
        }
        // A class may not be its own ancestor: drop the link that closes each loop.
        let mut sorted: Vec<usize> = parents.keys().copied().collect();
        sorted.sort_unstable();
        for start in sorted {
            let mut seen = HashSet::from([start]);
            let mut node = start;
            while let Some(&parent) = parents.get(&node) {
                if !seen.insert(parent) {
                    let declaration = &self.declarations[start];
                    if let Body::Model {
                        extends: Some((_, pos)),
                        ..
                    } = &declaration.body
                    {
                        let message = format!(
                            "'{}' extends itself through its parents; inheritance cannot loop",
                            declaration.name
                        );
                        self.diagnostics
                            .push(self.files[declaration.file].error(*pos, message));
                    }
                    parents.remove(&start);
                    break;
                }
                node = parent;
            }
        }
        parents
    }

    /// A model's fields with its ancestors': inherited fields first (from the root
    /// down), then its own, then `tail` fields (its own, then its parent's, up to the
    /// root's last), as Serverpod orders them. A field an ancestor already has is an error.
    fn inherited_fields(
        &mut self,
        index: usize,
        parents: &HashMap<usize, usize>,
        own_fields: &HashMap<usize, Vec<(Field, bool)>>,
    ) -> Vec<Field> {
        let mut chain = vec![index];
        while let Some(&parent) = parents.get(chain.last().unwrap_or(&index)) {
            if chain.contains(&parent) {
                break;
            }
            chain.push(parent);
        }
        let mut head: Vec<(Field, usize)> = Vec::new();
        // The root's parent may be another crate's class: its fields come first.
        let root = *chain.last().unwrap_or(&index);
        for field in self.external_parents.get(&root).into_iter().flatten() {
            head.push((field.clone(), root));
        }
        for &ancestor in chain.iter().rev() {
            for (field, tail) in own_fields.get(&ancestor).into_iter().flatten() {
                if !tail {
                    head.push((field.clone(), ancestor));
                }
            }
        }
        for &ancestor in &chain {
            for (field, tail) in own_fields.get(&ancestor).into_iter().flatten() {
                if *tail {
                    head.push((field.clone(), ancestor));
                }
            }
        }
        let mut fields: Vec<Field> = Vec::with_capacity(head.len());
        let mut owners: Vec<usize> = Vec::with_capacity(head.len());
        for (field, ancestor) in head {
            if let Some(at) = fields.iter().position(|f| f.name == field.name) {
                // Reported where the model being built redefines an ancestor's field;
                // a clash between two ancestors is reported at the younger one.
                let parent = match (ancestor == index, owners[at] == index) {
                    (true, _) => owners[at],
                    (_, true) => ancestor,
                    _ => continue,
                };
                let declaration = &self.declarations[index];
                let pos = match &declaration.body {
                    Body::Model { fields, .. } => fields
                        .iter()
                        .find(|f| f.name == field.name)
                        .map_or(declaration.name_pos, |f| f.key_pos),
                    Body::Enum(_) => declaration.name_pos,
                };
                let message = format!(
                    "field '{}' is already defined by the parent class '{}'; remove it here",
                    field.name, self.declarations[parent].name
                );
                self.diagnostics
                    .push(self.files[declaration.file].error(pos, message));
                continue;
            }
            fields.push(field);
            owners.push(ancestor);
        }
        fields
    }

    fn file(&self, declaration: &Declaration) -> &'a SourceFile {
        &self.files[declaration.file]
    }

    fn resolve_field(
        &mut self,
        owner: &Declaration,
        field: &RawField,
        names: &HashMap<String, usize>,
    ) -> Option<Field> {
        let mut ty = self.resolve_type(owner, field, &field.ty, names)?;
        let base = format!("{}{}Record", owner.name, pascal_case(&field.name));
        let mut count = 0;
        name_records(
            &mut ty,
            &base,
            &mut count,
            &format!("{}.{}", owner.name, field.name),
        );
        if count > 0 && names.contains_key(&base) {
            let message = format!("this field's record type would be generated as '{base}', which is already a model name; rename the field or the model");
            self.diagnostics
                .push(self.file(owner).error(field.key_pos, message));
        }
        if field.scope == Scope::All && !owner.server_only {
            if let Some(hidden) = self.server_only_name(&ty, names) {
                let message = format!(
                    "field '{}' of client-visible '{}' has the server-only type '{hidden}'; make the field scope=serverOnly or '{}' serverOnly",
                    field.name, owner.name, owner.name
                );
                self.diagnostics
                    .push(self.file(owner).error(field.key_pos, message));
            }
        }
        let default = match &field.default {
            None => None,
            Some((text, pos)) => match self.resolve_default(&ty, text) {
                Ok(value) => Some(value),
                Err(message) => {
                    self.diagnostics.push(self.file(owner).error(*pos, message));
                    None
                }
            },
        };
        Some(Field {
            name: field.name.clone(),
            rust_name: rust_field_name(&field.name),
            json_key: field.json_key.clone().unwrap_or_else(|| field.name.clone()),
            ty,
            default,
            scope: field.scope,
            docs: field.docs.clone(),
            boxed: false,
        })
    }

    fn resolve_type(
        &mut self,
        owner: &Declaration,
        field: &RawField,
        expr: &TypeExpr,
        names: &HashMap<String, usize>,
    ) -> Option<Type> {
        let pos = field.value_pos.shifted(expr.offset, expr.len);
        let resolved = match &expr.kind {
            TypeKind::Named(name) if name == "dynamic" => {
                // Dart's `dynamic` includes null: the field is nullable however written.
                return Some(Type::Option(Box::new(Type::Scalar(Scalar::Dynamic))));
            }
            TypeKind::Named(name) => {
                if let Some(scalar) = Scalar::from_name(name) {
                    Type::Scalar(scalar)
                } else if let Some(&index) = names.get(name) {
                    match self.declarations[index].body {
                        Body::Enum(_) => Type::Enum(name.clone()),
                        Body::Model { .. } if self.families.contains(name) => {
                            Type::Family(name.clone())
                        }
                        Body::Model { .. } => Type::Model(name.clone()),
                    }
                } else if let Some(ty) = self
                    .externals
                    .iter()
                    .filter(|e| matches!(e.qualifier, Qualifier::Package(_)))
                    .find_map(|e| e.types.get(name))
                {
                    ty.clone()
                } else {
                    let candidates = Scalar::ALL
                        .iter()
                        .map(|(n, _)| *n)
                        .chain(names.keys().map(String::as_str))
                        .chain(["List", "Set", "Map"]);
                    if self.broken.contains(name) {
                        return None;
                    }
                    let hint = unknown_type_hint(name, candidates);
                    let message = format!("unknown type '{name}'{hint}");
                    self.diagnostics.push(self.file(owner).error(pos, message));
                    return None;
                }
            }
            TypeKind::List(item) => {
                Type::List(Box::new(self.resolve_type(owner, field, item, names)?))
            }
            TypeKind::Vector(name, _) => match Scalar::vector(name) {
                Some(scalar) => Type::Scalar(scalar),
                None => {
                    let message = format!("unknown vector type '{name}'");
                    self.diagnostics.push(self.file(owner).error(pos, message));
                    return None;
                }
            },
            TypeKind::Set(item) => {
                Type::Set(Box::new(self.resolve_type(owner, field, item, names)?))
            }
            TypeKind::Map(key, value) => {
                let key_ty = self.resolve_type(owner, field, key, names)?;
                let value_ty = self.resolve_type(owner, field, value, names)?;
                Type::Map(Box::new(key_ty), Box::new(value_ty))
            }
            TypeKind::Record { positional, named } => {
                let mut record = Record {
                    positional: Vec::with_capacity(positional.len()),
                    named: Vec::with_capacity(named.len()),
                    struct_name: None,
                };
                for (index, (name, item)) in positional.iter().enumerate() {
                    let ty = self.resolve_type(owner, field, item, names)?;
                    let rust = name
                        .as_deref()
                        .map(rust_field_name)
                        .filter(|n| !n.starts_with("r#") && !n.ends_with('_'))
                        .unwrap_or_else(|| format!("p{}", index + 1));
                    record.positional.push((rust, ty));
                }
                for (name, item) in named {
                    let ty = self.resolve_type(owner, field, item, names)?;
                    record.named.push((name.clone(), rust_field_name(name), ty));
                }
                let mut seen = HashSet::new();
                let clash = record
                    .positional
                    .iter()
                    .map(|(rust, _)| rust)
                    .chain(record.named.iter().map(|(_, rust, _)| rust))
                    .find(|rust| !seen.insert(rust.as_str()));
                if let Some(clash) = clash {
                    let message = format!("two fields of this record are both named '{clash}'");
                    self.diagnostics.push(self.file(owner).error(pos, message));
                    return None;
                }
                Type::Record(Box::new(record))
            }
            TypeKind::Module { module, name } => {
                let qualifier = Qualifier::Module(module.clone());
                self.resolve_external(owner, pos, &qualifier, name)?
            }
            TypeKind::Package { package, name } => {
                let qualifier = Qualifier::Package(package.clone());
                self.resolve_external(owner, pos, &qualifier, name)?
            }
        };
        Some(if expr.nullable {
            Type::Option(Box::new(resolved))
        } else {
            resolved
        })
    }

    /// The first server-only model or enum the type mentions.
    /// A type of another crate, named `module:nickname:Type` or `package:Type`.
    fn resolve_external(
        &mut self,
        owner: &Declaration,
        pos: Pos,
        qualifier: &Qualifier,
        name: &str,
    ) -> Option<Type> {
        let (what, label, method) = match qualifier {
            Qualifier::Module(label) => ("module", label, "module"),
            Qualifier::Package(label) => ("package", label, "shared"),
        };
        let message = match self.externals.iter().find(|e| e.qualifier == *qualifier) {
            None => format!("unknown {what} '{label}': its types need its models, given with Builder::{method}(\"{label}\", dir, rust_path)"),
            Some(external) => match external.types.get(name) {
                Some(ty) => return Some(ty.clone()),
                None => {
                    let hint = did_you_mean(name, external.types.keys().map(String::as_str));
                    format!("{what} '{label}' has no model '{name}'{hint}")
                }
            },
        };
        self.diagnostics.push(self.file(owner).error(pos, message));
        None
    }

    fn server_only_name(&self, ty: &Type, names: &HashMap<String, usize>) -> Option<String> {
        match ty {
            Type::Model(name) | Type::Family(name) | Type::Enum(name) => names
                .get(name)
                .filter(|&&i| self.declarations[i].server_only)
                .map(|_| name.clone()),
            Type::Option(inner) | Type::List(inner) | Type::Set(inner) => {
                self.server_only_name(inner, names)
            }
            Type::Map(key, value) => self
                .server_only_name(key, names)
                .or_else(|| self.server_only_name(value, names)),
            Type::Record(record) => record
                .positional
                .iter()
                .map(|(_, ty)| ty)
                .chain(record.named.iter().map(|(_, _, ty)| ty))
                .find_map(|ty| self.server_only_name(ty, names)),
            Type::Scalar(_) | Type::External { .. } => None,
        }
    }

    fn resolve_default(&self, ty: &Type, text: &str) -> Result<DefaultValue, String> {
        match ty.non_null() {
            Type::Scalar(scalar) => defaults::parse_scalar(*scalar, text),
            Type::Enum(name) => {
                let Some(Body::Enum(e)) = self
                    .declarations
                    .iter()
                    .find(|d| d.name == *name)
                    .map(|d| &d.body)
                else {
                    return Err(format!("enum '{name}' not found"));
                };
                let text = text.trim();
                if e.values.iter().any(|v| v.name == text) {
                    Ok(DefaultValue::EnumValue(text.to_owned()))
                } else {
                    Err(format!(
                        "'{text}' is not a value of enum '{name}'{}",
                        did_you_mean(text, e.values.iter().map(|v| v.name.as_str()))
                    ))
                }
            }
            _ => Err("only scalar and enum fields can have a default".into()),
        }
    }

    /// Drops fields whose Rust name or JSON key repeats an earlier field's.
    fn check_rust_names(&mut self, owner: &Declaration, fields: Vec<Field>) -> Vec<Field> {
        let Body::Model { fields: raw, .. } = &owner.body else {
            return fields;
        };
        let mut by_rust: HashMap<String, String> = HashMap::new();
        let mut by_json: HashMap<String, String> = HashMap::new();
        let mut kept = Vec::with_capacity(fields.len());
        for field in fields {
            let pos = raw
                .iter()
                .find(|r| r.name == field.name)
                .map_or(owner.name_pos, |r| r.key_pos);
            let clash = if let Some(previous) = by_rust.get(&field.rust_name) {
                Some(if *previous == field.name {
                    format!("duplicate field '{}'", field.name)
                } else {
                    format!(
                        "fields '{previous}' and '{}' both become the Rust field '{}'; rename one",
                        field.name, field.rust_name
                    )
                })
            } else {
                by_json.get(&field.json_key).map(|previous| {
                    format!(
                        "fields '{previous}' and '{}' both use the JSON key '{}'",
                        field.name, field.json_key
                    )
                })
            };
            if let Some(message) = clash {
                self.diagnostics.push(self.file(owner).error(pos, message));
                continue;
            }
            by_rust.insert(field.rust_name.clone(), field.name.clone());
            by_json.insert(field.json_key.clone(), field.name.clone());
            kept.push(field);
        }
        kept
    }

    /// Boxes every direct model reference that closes a cycle (so the type has a finite
    /// size) and rejects cycles made only of non-nullable references (no value of such a
    /// type could ever be built).
    fn box_cycles(&mut self, set: &mut ModelSet, names: &HashMap<String, usize>) {
        let index: HashMap<&str, usize> = set
            .models
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.as_str(), i))
            .collect();
        // Direct edges: (owner, field, target, nullable).
        let mut edges = Vec::new();
        for (owner, model) in set.models.iter().enumerate() {
            for (field_index, field) in model.fields.iter().enumerate() {
                match field.ty.non_null() {
                    Type::Model(target) => {
                        if let Some(&target) = index.get(target.as_str()) {
                            edges.push((owner, field_index, target, field.nullable()));
                        }
                    }
                    Type::Record(record) => {
                        // A record holds its fields inline, like the model itself.
                        let mut targets = Vec::new();
                        inline_models(
                            &Type::Record(record.clone()),
                            field.nullable(),
                            &mut targets,
                        );
                        for (target, nullable) in targets {
                            if let Some(&target) = index.get(target.as_str()) {
                                edges.push((owner, field_index, target, nullable));
                            }
                        }
                    }
                    Type::Family(family) => {
                        // Any member may close a cycle; a value can always pick another
                        // member, so these edges never count as unbuildable.
                        let members = set.families.iter().find(|f| f.name == *family);
                        for member in members.into_iter().flat_map(|f| &f.members) {
                            if let Some(&target) = index.get(member.as_str()) {
                                edges.push((owner, field_index, target, true));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        let all_reach = reachability(set.models.len(), edges.iter().map(|e| (e.0, e.2)));
        let strict_edges: Vec<_> = edges.iter().filter(|e| !e.3).map(|e| (e.0, e.2)).collect();
        let strict_reach = reachability(set.models.len(), strict_edges.iter().copied());

        let mut reported: HashSet<usize> = HashSet::new();
        for &(owner, field_index, target, nullable) in &edges {
            if all_reach[target].contains(&owner) {
                set.models[owner].fields[field_index].boxed = true;
            }
            if !nullable && strict_reach[target].contains(&owner) {
                let cycle_id = *strict_reach[owner]
                    .iter()
                    .filter(|&&m| strict_reach[m].contains(&owner))
                    .min()
                    .unwrap_or(&owner);
                if !reported.insert(cycle_id) {
                    continue;
                }
                let path = cycle_path(
                    &set.models,
                    &strict_edges,
                    &edges,
                    owner,
                    field_index,
                    target,
                );
                let model = &set.models[owner];
                let Some(declaration) = names.get(&model.name).map(|&i| &self.declarations[i])
                else {
                    continue;
                };
                let Body::Model { fields, .. } = &declaration.body else {
                    continue;
                };
                let pos = fields
                    .iter()
                    .find(|f| f.name == model.fields[field_index].name)
                    .map_or(declaration.name_pos, |f| f.key_pos);
                let message = format!(
                    "'{}' contains itself through non-nullable fields ({path}), so no value of it can be built; make one of these fields nullable or a List",
                    model.name
                );
                self.diagnostics
                    .push(self.files[declaration.file].error(pos, message));
            }
        }
    }
}

/// What to say after "unknown type 'X'": the type meant, when `X` is another language's
/// name for a Serverpod type or a near miss, and what stays out otherwise.
fn unknown_type_hint<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    let alias = match name.to_ascii_lowercase().as_str() {
        "integer" | "int" | "long" | "int32" | "int64" | "i32" | "i64" | "usize" => Some("int"),
        "string" | "str" | "text" => Some("String"),
        "boolean" | "bool" => Some("bool"),
        "float" | "double" | "number" | "num" | "f32" | "f64" | "decimal" => Some("double"),
        "uuid" | "uuidvalue" | "guid" => Some("UuidValue"),
        "datetime" | "date" | "timestamp" | "time" => Some("DateTime"),
        "duration" | "timespan" => Some("Duration"),
        "uri" | "url" => Some("Uri"),
        "bigint" | "biginteger" => Some("BigInt"),
        "bytedata" | "bytes" | "blob" => Some("ByteData"),
        "object" | "any" | "json" => Some("dynamic"),
        _ => None,
    };
    if let Some(alias) = alias {
        return format!(" (did you mean '{alias}'?)");
    }
    if name.starts_with("Geography") {
        return " (PostGIS types need Serverpod's database layer, which streampod does not have)"
            .to_owned();
    }
    let suggestion = did_you_mean(name, candidates);
    if suggestion.is_empty() {
        " (not a model of this run, nor a Serverpod type; custom Dart classes (extraClasses) cannot be used: define it as a model, or name its module with module:nickname:Type)".to_owned()
    } else {
        suggestion
    }
}

/// The models a record holds inline (not behind a List, Set or Map), each with whether
/// some `?` on the way makes it optional.
fn inline_models(ty: &Type, nullable: bool, out: &mut Vec<(String, bool)>) {
    match ty {
        Type::Model(name) => out.push((name.clone(), nullable)),
        Type::Option(inner) => inline_models(inner, true, out),
        Type::Record(record) => {
            for (_, item) in &record.positional {
                inline_models(item, nullable, out);
            }
            for (_, _, item) in &record.named {
                inline_models(item, nullable, out);
            }
        }
        _ => {}
    }
}

/// Names the generated struct of every record with named fields in `ty`: `base`, then
/// `base2`, `base3`, … in the order they appear.
fn name_records(ty: &mut Type, base: &str, count: &mut usize, used_in: &str) {
    match ty {
        Type::Option(inner) | Type::List(inner) | Type::Set(inner) => {
            name_records(inner, base, count, used_in);
        }
        Type::Map(key, value) => {
            name_records(key, base, count, used_in);
            name_records(value, base, count, used_in);
        }
        Type::Record(record) => {
            for (_, item) in &mut record.positional {
                name_records(item, base, count, used_in);
            }
            for (_, _, item) in &mut record.named {
                name_records(item, base, count, used_in);
            }
            if !record.named.is_empty() {
                *count += 1;
                let name = if *count == 1 {
                    base.to_owned()
                } else {
                    format!("{base}{count}")
                };
                record.struct_name = Some((name, used_in.to_owned()));
            }
        }
        Type::Scalar(_)
        | Type::Model(_)
        | Type::Family(_)
        | Type::Enum(_)
        | Type::External { .. } => {}
    }
}

/// For each node, the set of nodes reachable by one or more edges.
fn reachability(
    count: usize,
    edges: impl Iterator<Item = (usize, usize)> + Clone,
) -> Vec<HashSet<usize>> {
    let mut adjacency = vec![Vec::new(); count];
    for (from, to) in edges {
        adjacency[from].push(to);
    }
    (0..count)
        .map(|start| {
            let mut seen = HashSet::new();
            let mut queue: VecDeque<usize> = adjacency[start].iter().copied().collect();
            while let Some(node) = queue.pop_front() {
                if seen.insert(node) {
                    queue.extend(adjacency[node].iter().copied());
                }
            }
            seen
        })
        .collect()
}

/// `A.b -> B.a -> A` for the cycle through `owner.field`.
fn cycle_path(
    models: &[Model],
    strict_edges: &[(usize, usize)],
    edges: &[(usize, usize, usize, bool)],
    owner: usize,
    field_index: usize,
    target: usize,
) -> String {
    // Breadth-first from target back to owner over non-nullable edges.
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([target]);
    let mut seen = HashSet::from([target]);
    while let Some(node) = queue.pop_front() {
        if node == owner {
            break;
        }
        for &(from, to) in strict_edges {
            if from == node && seen.insert(to) {
                parent.insert(to, from);
                queue.push_back(to);
            }
        }
    }
    let mut chain = vec![owner];
    let mut node = owner;
    while node != target {
        match parent.get(&node) {
            Some(&previous) => {
                chain.push(previous);
                node = previous;
            }
            None => break,
        }
    }
    chain.reverse();
    let mut text = format!(
        "{}.{}",
        models[owner].name, models[owner].fields[field_index].name
    );
    for pair in chain.windows(2) {
        let field = edges
            .iter()
            .find(|e| e.0 == pair[0] && e.2 == pair[1] && !e.3)
            .map_or("?", |e| models[e.0].fields[e.1].name.as_str());
        text.push_str(&format!(" -> {}.{field}", models[pair[0]].name));
    }
    text.push_str(&format!(" -> {}", models[owner].name));
    text
}

/// `senderName` → `sender_name`; keywords become raw identifiers, or get a `_` suffix
/// where Rust allows no raw form.
pub(crate) fn rust_field_name(name: &str) -> String {
    let snake = snake_case(name);
    match snake.as_str() {
        "self" | "super" | "crate" | "_" => format!("{snake}_"),
        keyword if is_keyword(keyword) => format!("r#{snake}"),
        _ => snake,
    }
}

fn is_keyword(word: &str) -> bool {
    const KEYWORDS: [&str; 51] = [
        "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn",
        "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref",
        "return", "self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use",
        "where", "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final",
        "macro", "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
    ];
    KEYWORDS.contains(&word)
}

/// Splits camelCase, PascalCase, acronyms and `_` into lowercase words.
fn words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut words = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            continue;
        }
        let previous = i.checked_sub(1).map(|p| chars[p]);
        let next = chars.get(i + 1).copied();
        let boundary = c.is_ascii_uppercase()
            && previous.is_some_and(|p| {
                p.is_ascii_lowercase()
                    || p.is_ascii_digit()
                    || (p.is_ascii_uppercase() && next.is_some_and(|n| n.is_ascii_lowercase()))
            });
        if boundary && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        current.push(c.to_ascii_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

fn snake_case(name: &str) -> String {
    words(name).join("_")
}

fn pascal_case(name: &str) -> String {
    words(name)
        .iter()
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_convert_like_heck() {
        assert_eq!(snake_case("senderName"), "sender_name");
        assert_eq!(snake_case("userID"), "user_id");
        assert_eq!(snake_case("HTTPServer2Go"), "http_server2_go");
        assert_eq!(snake_case("already_snake"), "already_snake");
        assert_eq!(pascal_case("inProgress"), "InProgress");
        assert_eq!(pascal_case("ALL_DONE"), "AllDone");
        assert_eq!(rust_field_name("type"), "r#type");
        assert_eq!(rust_field_name("self"), "self_");
        assert_eq!(rust_field_name("asyncValue"), "async_value");
    }

    #[test]
    fn splits_options_outside_brackets_and_quotes() {
        assert_eq!(
            split_top_level("Map<String, int>?, default='a, b', scope=serverOnly"),
            vec![
                (0, "Map<String, int>?"),
                (19, "default='a, b'"),
                (35, "scope=serverOnly")
            ]
        );
    }
}
