//! JSON Schemas of tool arguments and results, generated from the same types the REST API
//! documents (utoipa): self-contained (`$defs`), as MCP clients validate them without the
//! OpenAPI document around them.

use std::sync::Arc;

use rmcp::model::JsonObject;
use serde_json::Value;
use utoipa::ToSchema;

/// Where utoipa points a reference, and where a self-contained schema keeps it.
const OPENAPI_REFS: &str = "#/components/schemas/";
const OWN_REFS: &str = "#/$defs/";

/// The schema of `T`, with every schema it refers to under `$defs`.
pub fn of<T: ToSchema>() -> Arc<JsonObject> {
    let mut dependencies = Vec::new();
    T::schemas(&mut dependencies);
    let mut root = serde_json::to_value(T::schema()).unwrap_or(Value::Null);
    let mut defs = serde_json::Map::new();
    for (name, schema) in dependencies {
        let mut schema = serde_json::to_value(schema).unwrap_or(Value::Null);
        relink(&mut schema);
        defs.insert(name, schema);
    }
    relink(&mut root);
    let mut object = match root {
        Value::Object(object) => object,
        _ => JsonObject::new(),
    };
    if !defs.is_empty() {
        object.insert("$defs".into(), Value::Object(defs));
    }
    Arc::new(object)
}

/// Points OpenAPI component references at `$defs`.
fn relink(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if key == "$ref"
                    && let Value::String(target) = inner
                    && let Some(name) = target.strip_prefix(OPENAPI_REFS)
                {
                    *target = format!("{OWN_REFS}{name}");
                } else {
                    relink(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(relink),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use sacp_wire::dto::CheckoutDto;

    #[test]
    fn a_schema_carries_everything_it_refers_to() {
        let schema = super::of::<CheckoutDto>();
        let text = serde_json::to_string(&*schema).unwrap();
        assert!(!text.contains("#/components/"), "{text}");
        assert_eq!(schema["type"], "object");
        let defs = schema["$defs"].as_object().expect("$defs");
        for reference in text.split("\"$ref\":\"#/$defs/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(defs.contains_key(name), "{name} is defined");
        }
    }
}
