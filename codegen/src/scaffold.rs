//! `streampod-codegen new DIR`: a new server crate, as `serverpod create` makes one. The
//! files are the repository's walkthrough crate (`example-server/walkthrough`, built and
//! tested with the workspace), renamed, with its dependencies pointed at a checkout.

use std::fs;
use std::path::{Component, Path, PathBuf};

/// The walkthrough crate's files, by path inside it. `Cargo.toml` is rewritten on the way.
const FILES: [(&str, &str); 14] = [
    (
        "Cargo.toml",
        include_str!("../../example-server/walkthrough/Cargo.toml"),
    ),
    (
        "README.md",
        include_str!("../../example-server/walkthrough/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../../example-server/walkthrough/.gitignore"),
    ),
    (
        "build.rs",
        include_str!("../../example-server/walkthrough/build.rs"),
    ),
    (
        "methods.json",
        include_str!("../../example-server/walkthrough/methods.json"),
    ),
    (
        "models/chat_message.yaml",
        include_str!("../../example-server/walkthrough/models/chat_message.yaml"),
    ),
    (
        "models/channel_subscription.yaml",
        include_str!("../../example-server/walkthrough/models/channel_subscription.yaml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../example-server/walkthrough/src/lib.rs"),
    ),
    (
        "src/main.rs",
        include_str!("../../example-server/walkthrough/src/main.rs"),
    ),
    (
        "src/bin/client.rs",
        include_str!("../../example-server/walkthrough/src/bin/client.rs"),
    ),
    (
        "tests/method_schema.rs",
        include_str!("../../example-server/walkthrough/tests/method_schema.rs"),
    ),
    (
        "web/package.json",
        include_str!("../../example-server/walkthrough/web/package.json"),
    ),
    (
        "web/tsconfig.json",
        include_str!("../../example-server/walkthrough/web/tsconfig.json"),
    ),
    (
        "web/src/client.ts",
        include_str!("../../example-server/walkthrough/web/src/client.ts"),
    ),
];

/// The walkthrough's name, replaced by the new crate's.
const TEMPLATE_NAME: &str = "streampod-walkthrough";

/// The walkthrough's dependency paths, relative to it, replaced by the checkout's.
const TEMPLATE_CHECKOUT: &str = "../..";

/// Why a crate could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScaffoldError {
    /// The directory exists and holds files: nothing is overwritten.
    #[error("{} already exists and is not empty: choose a new directory", .0.display())]
    NotEmpty(PathBuf),
    /// The crate name is not one cargo accepts.
    #[error("'{0}' is no crate name: use letters, digits, '-' and '_', starting with a letter (or pass --name)")]
    InvalidName(String),
    /// The streampod checkout has no `framework/` and `codegen/` crates.
    #[error("{} is no streampod checkout (no framework/Cargo.toml): pass --streampod PATH", .0.display())]
    NoCheckout(PathBuf),
    /// A file or directory could not be read or written.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// What [`create`] makes.
#[derive(Debug, Clone)]
pub struct Scaffold {
    /// The crate's name (`my-game`); its library is the same in snake case.
    pub name: String,
    /// The streampod checkout the crate depends on by path.
    pub streampod: PathBuf,
}

/// The streampod checkout this generator was built from, if it is one.
#[must_use]
pub fn own_checkout() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    root.join("framework/Cargo.toml")
        .is_file()
        .then(|| root.to_path_buf())
}

/// Writes a new server crate into `dir` (created if missing; it must be empty): models, a
/// build script that generates the Rust types, typed Rust calls and the TypeScript client,
/// an endpoint, an HTTP method, a server, a Rust client, a Node client, a test and a
/// README, with the checkout's `Cargo.lock` so the versions are the ones streampod is
/// tested with. Returns the files written.
///
/// # Errors
///
/// [`ScaffoldError`]: a non-empty `dir`, a bad name, no checkout at `scaffold.streampod`,
/// or a file that cannot be written.
pub fn create(dir: &Path, scaffold: &Scaffold) -> Result<Vec<PathBuf>, ScaffoldError> {
    if !valid_name(&scaffold.name) {
        return Err(ScaffoldError::InvalidName(scaffold.name.clone()));
    }
    if !scaffold.streampod.join("framework/Cargo.toml").is_file() {
        return Err(ScaffoldError::NoCheckout(scaffold.streampod.clone()));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ScaffoldError::Io { path, source }
    };
    if fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(ScaffoldError::NotEmpty(dir.to_path_buf()));
    }
    fs::create_dir_all(dir).map_err(io(dir))?;
    let checkout = dependency_path(dir, &scaffold.streampod);
    let snake = scaffold.name.replace('-', "_");
    let mut written = Vec::with_capacity(FILES.len() + 1);
    for (relative, template) in FILES {
        let mut text = template
            .replace(TEMPLATE_NAME, &scaffold.name)
            .replace(&TEMPLATE_NAME.replace('-', "_"), &snake);
        if relative == "Cargo.toml" {
            text = manifest(&text, &checkout);
        }
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        fs::write(&path, text).map_err(io(&path))?;
        written.push(path);
    }
    let lock = scaffold.streampod.join("Cargo.lock");
    if lock.is_file() {
        let path = dir.join("Cargo.lock");
        fs::copy(&lock, &path).map_err(io(&path))?;
        written.push(path);
    }
    Ok(written)
}

/// The walkthrough's manifest with the dependencies on `checkout`, as a workspace of its
/// own (so it builds wherever it is created, inside another workspace too).
fn manifest(template: &str, checkout: &str) -> String {
    let from = format!("path = \"{TEMPLATE_CHECKOUT}/");
    let to = format!("path = \"{checkout}/");
    let mut text = template.replace(&from, &to);
    text.push_str(
        "\n# A workspace of its own; remove this to add the crate to another one.\n[workspace]\n",
    );
    text
}

/// The checkout as a path from `dir`: relative when both resolve, absolute otherwise.
fn dependency_path(dir: &Path, checkout: &Path) -> String {
    let (Ok(from), Ok(to)) = (dir.canonicalize(), checkout.canonicalize()) else {
        return checkout.display().to_string();
    };
    relative(&from, &to).unwrap_or(to).display().to_string()
}

/// `to` as seen from `from` (both absolute and resolved).
fn relative(from: &Path, to: &Path) -> Option<PathBuf> {
    let from: Vec<Component<'_>> = from.components().collect();
    let to: Vec<Component<'_>> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    // Sharing only the root: the absolute path reads better.
    if common <= 1 {
        return None;
    }
    let mut path: PathBuf = from[common..].iter().map(|_| "..").collect();
    path.extend(&to[common..]);
    if path.as_os_str().is_empty() {
        path.push(".");
    }
    Some(path)
}

/// A name cargo takes for a package (and a library, once `-` becomes `_`).
fn valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_from_the_new_crate_to_the_checkout() {
        let at = |from: &str, to: &str| relative(Path::new(from), Path::new(to)).unwrap();
        assert_eq!(
            at("/work/my-game", "/work/streampod"),
            Path::new("../streampod")
        );
        assert_eq!(
            relative(Path::new("/tmp/a"), Path::new("/work/streampod")),
            None
        );
        assert_eq!(
            at("/work/streampod/games/x", "/work/streampod"),
            Path::new("../..")
        );
    }

    #[test]
    fn crate_names() {
        assert!(valid_name("my-game"));
        assert!(valid_name("game_2"));
        assert!(!valid_name("2game"));
        assert!(!valid_name("my game"));
        assert!(!valid_name(""));
    }

    #[test]
    fn the_manifest_points_at_the_checkout_and_stands_alone() {
        let text = manifest(FILES[0].1, "../streampod");
        assert!(
            text.contains("streampod = { path = \"../streampod/framework\" }"),
            "{text}"
        );
        assert!(
            text.contains("streampod-codegen = { path = \"../streampod/codegen\" }"),
            "{text}"
        );
        assert!(text.trim_end().ends_with("[workspace]"), "{text}");
    }
}
