//! The `#[endpoint]` method tables registered on a server, by endpoint name, and the
//! method schema that describes them.

use std::sync::Arc;


use super::table::Methods;
use crate::protocol::schema::{ArgSignature, EndpointSchema, MethodSchema, MethodSignature};
use crate::protocol::ModelSet;


/// One registered method endpoint: its name and its methods.
type Registered<P> = (Arc<str>, Arc<dyn Methods<P>>);

/// Method endpoints by name, in registration order.
pub(crate) struct MethodEndpoints<P: ModelSet> {
    list: Vec<Registered<P>>,
}

impl<P: ModelSet> Default for MethodEndpoints<P> {
    fn default() -> Self {
        Self { list: Vec::new() }
    }
}

impl<P: ModelSet> MethodEndpoints<P> {
    pub(crate) fn insert(&mut self, name: &str, methods: Arc<dyn Methods<P>>) -> bool {
        if self.get(name).is_some() {
            return false;
        }
        self.list.push((Arc::from(name), methods));
        true
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Registered<P>> {
        self.list.iter().find(|(n, _)| &**n == name)
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|(n, _)| &**n)
    }

    /// Every endpoint's methods with their types, for client generators.
    pub(crate) fn schema(&self) -> MethodSchema {
        let endpoints = self
            .list
            .iter()
            .map(|(name, methods)| EndpointSchema {
                name: name.to_string(),
                methods: methods
                    .method_table()
                    .iter()
                    .enumerate()
                    .map(|(index, info)| {
                        let types = methods.method_types(index);
                        let signatures = |names: &[&str], types: Vec<String>| {
                            names
                                .iter()
                                .zip(types)
                                .map(|(name, ty)| ArgSignature {
                                    name: (*name).to_owned(),
                                    ty,
                                })
                                .collect()
                        };
                        MethodSignature {
                            name: info.name.to_owned(),
                            docs: info.docs.to_owned(),
                            args: signatures(info.args, types.args),
                            streaming: info.streaming,
                            input_streams: signatures(info.input_streams, types.input_streams),
                            returns: types.returns,
                            exceptions: types.exception.map(str::to_owned).into_iter().collect(),
                            require_login: info.require_login,
                            scopes: info.scopes.iter().map(|s| (*s).to_owned()).collect(),
                        }
                    })
                    .collect(),
            })
            .collect();
        MethodSchema { endpoints }
    }
}
