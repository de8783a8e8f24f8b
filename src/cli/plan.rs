//! `envc plan`.

use std::sync::Arc;

use super::PlanArgs;
use crate::graph::Placement;
use crate::progress::{Event, Reporter};
use crate::store::Store;
use crate::Result;

pub async fn run(args: PlanArgs, reporter: Arc<dyn Reporter>) -> Result<()> {
    let options = super::build::project_options(&args.project)?;
    let store = Store::open(&options.store)?;
    let registry = options.registry();
    let engine = super::build::engine_choice(args.engine, &args.buildkit)?;
    let cancel = crate::engine::Cancel::default();
    let stages = crate::build::StageBuild {
        engine: &engine,
        reporter: reporter.as_ref(),
        cancel: &cancel,
    };
    let planned = crate::build::make_plan(&options, &store, &registry, stages).await?;
    for message in &planned.warnings {
        reporter.report(Event::Warning {
            message: message.clone(),
        });
    }
    let plan = &planned.plan;
    if args.llb {
        let lowered = crate::engine::buildkit::llb::lower(plan)
            .map_err(|e| crate::engine::Error::from(crate::engine::buildkit::Error::from(e)))?;
        print!(
            "{}",
            crate::engine::buildkit::llb::describe(&lowered.definition)
        );
        return Ok(());
    }

    let cached: Vec<bool> = plan
        .features
        .iter()
        .map(|step| store.step_record(&step.cache_key).map(|r| r.is_some()))
        .collect::<Result<_, _>>()?;
    if args.json {
        let mut value = serde_json::to_value(plan).expect("plans serialize");
        if let Some(steps) = value.get_mut("features").and_then(|f| f.as_array_mut()) {
            for (index, (step, cached)) in steps.iter_mut().zip(&cached).enumerate() {
                step["cached"] = serde_json::Value::Bool(*cached);
                if let (true, Some(placement)) = (args.explain, planned.order.get(index)) {
                    step["placement"] = placement_json(placement);
                }
            }
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&value).expect("plans serialize")
        );
        return Ok(());
    }

    println!("base      {} ({})", plan.base.reference, plan.base.digest);
    for (index, (step, cached)) in plan.features.iter().zip(&cached).enumerate() {
        let state = if *cached { "cached" } else { "to build" };
        println!(
            "{:>2}. {:<20} {:<9} {}",
            index + 1,
            step.id,
            state,
            step.reference
        );
        for (name, value) in &step.options {
            println!("      {name} = {}", value.to_env_string());
        }
    }
    println!("plan      {}", plan.plan_digest);
    if args.explain {
        println!("\ninstall order, and why:");
        print!("{}", explanation(&planned.labels, &planned.order));
    }
    Ok(())
}

/// The explanation of a whole install order: one numbered line per instance with its label,
/// then the round, priority and reason.
pub fn explanation(labels: &[String], placements: &[Placement]) -> String {
    let mut out = String::new();
    for (index, (label, placement)) in labels.iter().zip(placements).enumerate() {
        out.push_str(&format!("{:>2}. {label}\n", index + 1));
        out.push_str(&format!("    {}\n", why(placement)));
    }
    out
}

/// `round R, priority P: reason`.
fn why(placement: &Placement) -> String {
    let reason = placement.reason();
    let detail = reason
        .split_once(": ")
        .map(|(_, rest)| rest.to_string())
        .unwrap_or(reason);
    format!(
        "round {}, priority {}: {detail}",
        placement.round, placement.priority
    )
}

fn placement_json(placement: &Placement) -> serde_json::Value {
    serde_json::json!({
        "round": placement.round,
        "priority": placement.priority,
        "dependsOn": placement.depends_on,
        "installsAfter": placement.installs_after,
        "reason": why(placement),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{RegistryClient, RegistryOptions};
    use std::path::Path;

    #[tokio::test]
    async fn the_anchor_project_explains_its_order() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/anchor-project");
        let file = root.join(".devcontainer/devcontainer.json");
        let config = crate::config::load(&file, &|_| None).unwrap();
        let cache = tempfile::tempdir().unwrap();
        let registry = RegistryClient::new(RegistryOptions::default());
        let resolution = crate::feature::resolve_features(&config, &registry, cache.path())
            .await
            .unwrap();
        let ordered =
            crate::graph::install_order_explained(resolution, &config.override_install_order)
                .unwrap();
        let labels: Vec<String> = ordered.instances.iter().map(crate::graph::label).collect();
        insta::assert_snapshot!(explanation(&labels, &ordered.placements));
    }

    #[test]
    fn why_names_round_priority_and_edges() {
        let placement = Placement {
            round: 3,
            priority: 2,
            depends_on: vec!["./a".into()],
            installs_after: vec![],
            held_back: 1,
            round_mates: vec![],
        };
        assert_eq!(
            why(&placement),
            "round 3, priority 2: after its dependsOn ./a; override priority 2; \
             held back 1 round(s) by higher priorities"
        );
        let json = placement_json(&placement);
        assert_eq!(json["round"], 3);
        assert_eq!(json["dependsOn"][0], "./a");
    }
}
