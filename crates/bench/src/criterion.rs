//! Reads criterion's results (`<dir>/**/new/{benchmark,estimates}.json`) so that the
//! microbenchmarks land in the same table as the load measures.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// One microbenchmark's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Result {
    /// Its full id, e.g. `ratelimit/decide`.
    pub id: String,
    /// Mean time per iteration in nanoseconds.
    pub mean_ns: f64,
}

fn read_json(path: &Path) -> std::result::Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))
}

fn result_dirs(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") && path.join("estimates.json").is_file() {
            found.push(path);
        } else {
            result_dirs(&path, found);
        }
    }
}

/// Every result under `dir`, sorted by id.
pub fn results(dir: &Path) -> std::result::Result<Vec<Result>, String> {
    let mut dirs = Vec::new();
    result_dirs(dir, &mut dirs);
    let mut results = Vec::new();
    for new in dirs {
        let benchmark = read_json(&new.join("benchmark.json"))?;
        let estimates = read_json(&new.join("estimates.json"))?;
        let id = benchmark["full_id"]
            .as_str()
            .ok_or_else(|| format!("no full_id in {}", new.display()))?;
        let mean_ns = estimates["mean"]["point_estimate"]
            .as_f64()
            .ok_or_else(|| format!("no mean in {}", new.display()))?;
        results.push(Result {
            id: id.to_owned(),
            mean_ns,
        });
    }
    results.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nested_results() {
        let root =
            std::env::temp_dir().join(format!("sacp-bench-criterion-{}", std::process::id()));
        let new = root.join("ratelimit").join("decide").join("new");
        std::fs::create_dir_all(&new).expect("temp dir");
        std::fs::write(
            new.join("benchmark.json"),
            r#"{"full_id": "ratelimit/decide"}"#,
        )
        .expect("write");
        std::fs::write(
            new.join("estimates.json"),
            r#"{"mean": {"point_estimate": 41.5}}"#,
        )
        .expect("write");
        let found = results(&root);
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(
            found,
            Ok(vec![Result {
                id: "ratelimit/decide".into(),
                mean_ns: 41.5
            }])
        );
    }
}
