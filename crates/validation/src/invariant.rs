//! Invariants (FHIRPath constraints of the structure definitions): each expression is
//! parsed once and cached; those our engine cannot parse are skipped, not guessed.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use fhirpath::{Expr, Item};

static CACHE: LazyLock<RwLock<HashMap<String, Option<Arc<Expr>>>>> = LazyLock::new(|| RwLock::new(HashMap::new()));

/// The parsed expression, or `None` if it uses FHIRPath we do not support yet.
pub fn compiled(expression: &str) -> Option<Arc<Expr>> {
    if let Ok(cache) = CACHE.read()
        && let Some(hit) = cache.get(expression)
    {
        return hit.clone();
    }
    let parsed = fhirpath::parse_supported(expression).ok().map(Arc::new);
    if let Ok(mut cache) = CACHE.write() {
        cache.insert(expression.to_string(), parsed.clone());
    }
    parsed
}

/// The verdict of an invariant: a single boolean is itself; an empty result (the
/// expression could not be decided, e.g. a Reference without `reference` in `ref-1`)
/// passes, as with the reference validator; any other result passes.
pub fn passes(items: &[Item<'_>]) -> bool {
    match items {
        [] => true,
        [one] => match one {
            Item::Bool(b) => *b,
            Item::Node(serde_json::Value::Bool(b), _) => *b,
            _ => true,
        },
        _ => true,
    }
}
