//! SLSA provenance (v0.2 predicate, the one `cosign verify-attestation --type slsaprovenance`
//! reads): which builder made the image, from which config file, with which base image and
//! Features, on which engine.

use serde_json::{json, Value};

use super::facts::{hex_of, time_text, BuildFacts};

/// The in-toto predicate type of SLSA provenance v0.2.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v0.2";
/// The kind of build envc runs, as SLSA's `buildType`.
pub const BUILD_TYPE: &str = "urn:envc:build-type:devcontainer:v1";

/// Returns envc's builder id, with its version, such as `urn:envc:builder:0.1.0`.
pub fn builder_id() -> String {
    format!("urn:envc:builder:{}", env!("CARGO_PKG_VERSION"))
}

/// Makes the provenance predicate of the build that `facts` describe.
pub fn predicate(facts: &BuildFacts) -> Value {
    let features: Vec<Value> = facts
        .features
        .iter()
        .map(|f| {
            json!({
                "id": f.id,
                "version": f.version,
                "ref": f.reference,
                "resolved": f.resolved,
                "digest": f.digest,
                "options": f.options,
            })
        })
        .collect();
    let mut materials = vec![json!({
        "uri": facts.base_reference,
        "digest": {"sha256": hex_of(&facts.base_digest)},
    })];
    materials.extend(facts.features.iter().map(|f| {
        json!({
            "uri": f.resolved.as_deref().unwrap_or(&f.reference),
            "digest": {"sha256": hex_of(&f.digest)},
        })
    }));

    json!({
        "builder": {"id": builder_id()},
        "buildType": BUILD_TYPE,
        "invocation": {
            "configSource": {
                "uri": facts.config_path,
                "digest": {"sha256": hex_of(&facts.config_digest)},
                "entryPoint": facts.config_path,
            },
            "parameters": {"features": features},
            "environment": {
                "engine": facts.engine,
                "network": facts.network,
            },
        },
        "buildConfig": {
            "engine": facts.engine,
            "envcVersion": env!("CARGO_PKG_VERSION"),
            "base": {"ref": facts.base_reference, "digest": facts.base_digest},
            "features": features,
            "compression": facts.compression,
            "sourceDateEpoch": facts.source_date_epoch,
            "planDigest": facts.plan_digest,
        },
        "metadata": {
            "buildStartedOn": time_text(facts.started),
            "buildFinishedOn": time_text(facts.finished),
            "completeness": {"parameters": true, "environment": false, "materials": true},
            "reproducible": true,
        },
        "materials": materials,
    })
}

#[cfg(test)]
mod tests {
    use super::super::facts::tests::sample;
    use super::*;

    #[test]
    fn builder_is_envc_with_version() {
        let value = predicate(&sample());
        assert_eq!(
            value["builder"]["id"],
            format!("urn:envc:builder:{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(value["buildType"], BUILD_TYPE);
    }

    #[test]
    fn config_source_has_file_digest() {
        let value = predicate(&sample());
        let source = &value["invocation"]["configSource"];
        assert_eq!(source["uri"], ".devcontainer/devcontainer.json");
        assert_eq!(source["digest"]["sha256"], "f".repeat(64));
    }

    #[test]
    fn materials_are_base_then_features() {
        let facts = sample();
        let value = predicate(&facts);
        let materials = value["materials"].as_array().unwrap();
        assert_eq!(materials.len(), 3);
        assert_eq!(materials[0]["uri"], facts.base_reference);
        assert_eq!(materials[0]["digest"]["sha256"], "b".repeat(64));
        assert_eq!(
            materials[1]["uri"],
            facts.features[0].resolved.clone().unwrap()
        );
        assert_eq!(materials[2]["uri"], "./local-thing");
    }

    #[test]
    fn build_config_names_engine_and_features() {
        let value = predicate(&sample());
        assert_eq!(value["buildConfig"]["engine"], "local");
        assert_eq!(
            value["buildConfig"]["features"][0]["options"]["extras"],
            true
        );
        assert_eq!(value["metadata"]["buildStartedOn"], "2023-11-14T22:13:20Z");
        assert_eq!(value["metadata"]["buildFinishedOn"], "2023-11-14T22:14:02Z");
    }
}
