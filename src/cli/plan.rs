//! `envc plan`.

use std::sync::Arc;

use super::PlanArgs;
use crate::progress::Reporter;
use crate::store::Store;
use crate::Result;

pub async fn run(args: PlanArgs, _reporter: Arc<dyn Reporter>) -> Result<()> {
    let options = super::build::project_options(&args.project)?;
    let store = Store::open(&options.store)?;
    let registry = options.registry();
    let planned = crate::build::make_plan(&options, &store, &registry).await?;
    let plan = &planned.plan;

    let cached: Vec<bool> = plan
        .features
        .iter()
        .map(|step| store.step_record(&step.cache_key).map(|r| r.is_some()))
        .collect::<Result<_, _>>()?;
    if args.json {
        let mut value = serde_json::to_value(plan).expect("plans serialize");
        if let Some(steps) = value.get_mut("features").and_then(|f| f.as_array_mut()) {
            for (step, cached) in steps.iter_mut().zip(&cached) {
                step["cached"] = serde_json::Value::Bool(*cached);
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
    Ok(())
}
