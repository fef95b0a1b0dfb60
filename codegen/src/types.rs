//! Field type expressions: `String`, `int?`, `List<Map<String, DateTime?>>?`, model names.

use crate::diagnostic::did_you_mean;

/// A parsed type, before names are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TypeExpr {
    pub(crate) kind: TypeKind,
    pub(crate) nullable: bool,
    /// Character offset of the type's name in the field's value text.
    pub(crate) offset: usize,
    /// Length of the name.
    pub(crate) len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TypeKind {
    /// A scalar (`int`, `DateTime`, …) or a model or enum name.
    Named(String),
    List(Box<TypeExpr>),
    Set(Box<TypeExpr>),
    Map(Box<TypeExpr>, Box<TypeExpr>),
    /// A pgvector type with its dimensions: `Vector(1536)`.
    Vector(String, u32),
    /// A Dart record: `(int, String name, {DateTime? at})`. Positional fields may carry a
    /// name (documentation only in Dart); named ones always do.
    Record {
        positional: Vec<(Option<String>, TypeExpr)>,
        named: Vec<(String, TypeExpr)>,
    },
    /// `module:nickname:Type`: a model of another crate's generated models.
    Module {
        module: String,
        name: String,
    },
    /// `package:Type`: a model of a shared package.
    Package {
        package: String,
        name: String,
    },
}

/// pgvector's types, written with their dimensions: `Vector(1536)`.
pub(crate) const VECTORS: [&str; 4] = ["Vector", "HalfVector", "SparseVector", "Bit"];

/// A syntax error at a character offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TypeError {
    pub(crate) offset: usize,
    pub(crate) len: usize,
    pub(crate) message: String,
}

const GENERICS: [&str; 3] = ["List", "Set", "Map"];

/// Parses a whole type expression.
pub(crate) fn parse(text: &str) -> Result<TypeExpr, TypeError> {
    let mut parser = Parser {
        chars: text.chars().collect(),
        at: 0,
    };
    parser.skip_spaces();
    let ty = parser.ty()?;
    parser.skip_spaces();
    if parser.at < parser.chars.len() {
        return Err(parser.error(
            1,
            format!("unexpected '{}' after the type", parser.chars[parser.at]),
        ));
    }
    Ok(ty)
}

struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn error(&self, len: usize, message: impl Into<String>) -> TypeError {
        TypeError {
            offset: self.at,
            len,
            message: message.into(),
        }
    }

    fn skip_spaces(&mut self) {
        while self.chars.get(self.at).is_some_and(|c| c.is_whitespace()) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_spaces();
        if self.chars.get(self.at) == Some(&c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// An identifier at the cursor, if one starts there.
    fn ident(&mut self) -> Option<String> {
        self.skip_spaces();
        let start = self.at;
        if !self
            .chars
            .get(self.at)
            .is_some_and(|c| c.is_ascii_alphabetic() || *c == '_')
        {
            return None;
        }
        while self
            .chars
            .get(self.at)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
        {
            self.at += 1;
        }
        Some(self.chars[start..self.at].iter().collect())
    }

    /// `module:nickname:Type` or `package:Type`, the cursor after the first name.
    fn module_type(&mut self, keyword: &str) -> Result<TypeExpr, TypeError> {
        self.at += 1;
        if keyword != "module" {
            let name_start = self.at;
            let Some(name) = self.ident() else {
                return Err(self.error(1, "a shared package's type is written 'package:Type'"));
            };
            let len = self.at - name_start;
            let nullable = self.eat('?');
            return Ok(TypeExpr {
                kind: TypeKind::Package {
                    package: keyword.to_owned(),
                    name,
                },
                nullable,
                offset: name_start,
                len,
            });
        }
        let module = self.ident();
        let separated = self.chars.get(self.at) == Some(&':');
        let (Some(module), true) = (module, separated) else {
            return Err(self.error(1, "a module type is written 'module:nickname:Type'"));
        };
        self.at += 1;
        let name_start = self.at;
        let Some(name) = self.ident() else {
            return Err(self.error(1, "a module type is written 'module:nickname:Type'"));
        };
        let len = self.at - name_start;
        let nullable = self.eat('?');
        Ok(TypeExpr {
            kind: TypeKind::Module { module, name },
            nullable,
            offset: name_start,
            len,
        })
    }

    /// `(T1, T2 name, {T3 named, T4? other})`, the cursor on `(`.
    fn record(&mut self) -> Result<TypeExpr, TypeError> {
        let start = self.at;
        self.at += 1;
        let (mut positional, mut named) = (Vec::new(), Vec::new());
        loop {
            if self.eat(')') {
                break;
            }
            if self.eat('{') {
                loop {
                    if self.eat('}') {
                        break;
                    }
                    let ty = self.ty()?;
                    let Some(name) = self.ident() else {
                        return Err(self
                            .error(1, "a named record field needs a name, like '{String name}'"));
                    };
                    named.push((name, ty));
                    if self.eat(',') {
                        continue;
                    }
                    if self.eat('}') {
                        break;
                    }
                    return Err(self.error(1, "expected ',' or '}' in the named record fields"));
                }
                self.eat(',');
                if !self.eat(')') {
                    return Err(self.error(
                        1,
                        "the named fields '{…}' come last in a record; expected ')'",
                    ));
                }
                break;
            }
            let ty = self.ty()?;
            let name = self.ident();
            positional.push((name, ty));
            if self.eat(',') {
                continue;
            }
            if !self.eat(')') {
                return Err(self.error(1, "expected ',' or ')' in the record"));
            }
            break;
        }
        if positional.is_empty() && named.is_empty() {
            self.at = start;
            return Err(self.error(2, "a record needs at least one field, like '(int,)'"));
        }
        let len = 1;
        let nullable = self.eat('?');
        Ok(TypeExpr {
            kind: TypeKind::Record { positional, named },
            nullable,
            offset: start,
            len,
        })
    }

    fn ty(&mut self) -> Result<TypeExpr, TypeError> {
        self.skip_spaces();
        let start = self.at;
        match self.chars.get(self.at) {
            None => return Err(self.error(1, "missing type")),
            Some('(') => return self.record(),
            Some(c) if !(c.is_ascii_alphabetic() || *c == '_') => {
                return Err(self.error(1, format!("expected a type name, found '{c}'")))
            }
            Some(_) => {}
        }
        while self
            .chars
            .get(self.at)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
        {
            self.at += 1;
        }
        let name: String = self.chars[start..self.at].iter().collect();
        let len = self.at - start;
        if self.chars.get(self.at) == Some(&':') {
            return self.module_type(&name);
        }
        let kind = if VECTORS.contains(&name.as_str()) {
            if !self.eat('(') {
                self.at = start;
                return Err(self.error(
                    len,
                    format!("'{name}' needs its dimensions, like '{name}(512)'"),
                ));
            }
            self.skip_spaces();
            let digits_start = self.at;
            while self.chars.get(self.at).is_some_and(char::is_ascii_digit) {
                self.at += 1;
            }
            let digits: String = self.chars[digits_start..self.at].iter().collect();
            let dimensions = digits.parse::<u32>().ok().filter(|d| *d > 0);
            let Some(dimensions) = dimensions else {
                self.at = digits_start;
                return Err(self.error(
                    1,
                    format!("'{name}(…)' takes a positive number of dimensions"),
                ));
            };
            if !self.eat(')') {
                return Err(self.error(1, format!("expected ')' to close '{name}('")));
            }
            TypeKind::Vector(name, dimensions)
        } else if self.eat('<') {
            let arity = match name.as_str() {
                "List" | "Set" => 1,
                "Map" => 2,
                _ => {
                    self.at = start;
                    return Err(self.error(
                        len,
                        format!(
                            "'{name}' takes no type arguments; generic types are List, Set and Map{}",
                            did_you_mean(&name, GENERICS)
                        ),
                    ));
                }
            };
            let mut args = vec![self.ty()?];
            while self.eat(',') {
                args.push(self.ty()?);
            }
            if !self.eat('>') {
                return Err(self.error(1, format!("expected '>' to close '{name}<'")));
            }
            if args.len() != arity {
                self.at = start;
                return Err(self.error(
                    len,
                    format!(
                        "'{name}' takes {arity} type argument(s), found {}",
                        args.len()
                    ),
                ));
            }
            let mut args = args.into_iter().map(Box::new);
            match (name.as_str(), args.next(), args.next()) {
                ("List", Some(item), _) => TypeKind::List(item),
                ("Set", Some(item), _) => TypeKind::Set(item),
                ("Map", Some(key), Some(value)) => TypeKind::Map(key, value),
                _ => unreachable!("arity checked above"),
            }
        } else if GENERICS.contains(&name.as_str()) {
            self.at = start;
            return Err(self.error(
                len,
                format!("'{name}' needs type arguments, like '{name}<int>'"),
            ));
        } else {
            TypeKind::Named(name)
        };
        let nullable = self.eat('?');
        Ok(TypeExpr {
            kind,
            nullable,
            offset: start,
            len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str, offset: usize, nullable: bool) -> TypeExpr {
        TypeExpr {
            kind: TypeKind::Named(name.into()),
            nullable,
            offset,
            len: name.len(),
        }
    }

    #[test]
    fn parses_nested_generics_with_offsets() {
        let ty = parse("Map<String, List<int?>>?").unwrap();
        assert!(ty.nullable);
        let TypeKind::Map(key, value) = ty.kind else {
            panic!()
        };
        assert_eq!(*key, named("String", 4, false));
        let TypeKind::List(item) = value.kind else {
            panic!()
        };
        assert_eq!(*item, named("int", 17, true));
    }

    #[test]
    fn parses_records_and_module_types() {
        let ty = parse("(String id, int, {Uri? optionalUri, List<(int,)> xs})?").unwrap();
        assert!(ty.nullable);
        let TypeKind::Record {
            positional,
            named: named_fields,
        } = ty.kind
        else {
            panic!()
        };
        assert_eq!(positional[0].0.as_deref(), Some("id"));
        assert_eq!(positional[1], (None, named("int", 12, false)));
        assert_eq!(
            named_fields[0],
            ("optionalUri".into(), named("Uri", 18, true))
        );
        assert_eq!(named_fields[1].0, "xs");
        assert!(matches!(
            parse("(String,)").unwrap().kind,
            TypeKind::Record { .. }
        ));
        let module = parse("List<module:auth:UserInfo?>").unwrap();
        let TypeKind::List(item) = module.kind else {
            panic!()
        };
        assert_eq!(
            item.kind,
            TypeKind::Module {
                module: "auth".into(),
                name: "UserInfo".into()
            }
        );
        assert_eq!((item.offset, item.len, item.nullable), (17, 8, true));
        assert_eq!(
            parse("shared:Model").unwrap().kind,
            TypeKind::Package {
                package: "shared".into(),
                name: "Model".into()
            }
        );
    }

    #[test]
    fn rejects_with_positions() {
        let err = |text| parse(text).unwrap_err();
        assert_eq!(err("Lst<int>").offset, 0);
        assert!(err("Lst<int>").message.contains("did you mean 'List'"));
        assert!(err("List").message.contains("needs type arguments"));
        assert!(err("Map<int>").message.contains("takes 2"));
        assert_eq!(err("List<int").offset, 8);
        assert!(err("()").message.contains("at least one field"));
        assert!(err("(int String x)")
            .message
            .contains("expected ',' or ')'"));
        assert!(err("({int})").message.contains("needs a name"));
        assert!(err("({int a}, String)").message.contains("come last"));
        assert!(err("module:auth").message.contains("module:nickname:Type"));
        assert!(err("shared:").message.contains("package:Type"));
        assert_eq!(err("int int").offset, 4);
        assert!(err("").message.contains("missing"));
        assert!(err("Vector").message.contains("Vector(512)"));
        assert!(err("Vector(0)").message.contains("positive"));
        assert_eq!(err("Bit(8").offset, 5);
        assert_eq!(
            parse("HalfVector( 3 )?").unwrap().kind,
            TypeKind::Vector("HalfVector".into(), 3)
        );
    }
}
