"""dagster-dask's executor with run-scoped task keys (selected by `[cluster] executor = "dask"`).

dagster-dask 0.29.27 submits each step under the Dask key "<job>.<step>", and Dask merges tasks that
share a key: a second run of the same job while the first is running gets the first run's results, its
steps never execute, and it still ends SUCCESS (dagster-io/dagster#21418). Here the key also holds the
run id; everything else is dagster-dask's own code path (query_on_dask_worker on the workers). Imported
only when selected: the embedded install has no Dask.
"""

from typing import Any

import dagster as dg
import dask.distributed
from dagster import _check as check
from dagster._core.definitions.executor_definition import multiple_process_executor_requirements
from dagster._core.errors import raise_execution_interrupts
from dagster._core.events import DagsterEvent
from dagster._utils import iterate_with_context
from dagster_dask.executor import DaskExecutor, get_dask_resource_requirements, query_on_dask_worker


def task_key(job_name: str, step_key: str, run_id: str) -> str:
    """The Dask task key of one step of one run: unique per run, so concurrent runs never share one."""
    return f"{job_name}.{step_key}.{run_id}"


class RunScopedDaskExecutor(DaskExecutor):
    """dagster-dask's executor on an existing cluster, each step under a run-scoped task key."""

    def execute(self, plan_context: Any, execution_plan: Any) -> Any:
        check.invariant(
            plan_context.instance.is_persistent, "the Dask executor needs a persistent Dagster instance"
        )
        check.invariant(self.cluster_type == "existing", "only an existing Dask cluster is supported")
        run_id = plan_context.dagster_run.run_id
        instance_ref = plan_context.instance.get_ref()
        with dask.distributed.Client(self.cluster_configuration["address"]) as client:
            futures: list[Any] = []
            by_step: dict[str, Any] = {}
            for level in execution_plan.get_steps_to_execute_by_level():
                for step in level:
                    upstream = [by_step[k] for inp in step.step_inputs for k in inp.dependency_keys]
                    future = client.submit(
                        query_on_dask_worker,
                        upstream,
                        plan_context.reconstructable_job,
                        plan_context.dagster_run,
                        plan_context.run_config,
                        [step.key],
                        instance_ref,
                        execution_plan.known_state,
                        key=task_key(plan_context.job_name, step.key, run_id),
                        resources=get_dask_resource_requirements(step.tags),
                    )
                    futures.append(future)
                    by_step[step.key] = future
            done = dask.distributed.as_completed(futures, with_results=True)
            for _future, events in iterate_with_context(raise_execution_interrupts, done):
                for event in events:
                    yield check.inst(event, DagsterEvent)


@dg.executor(
    name="dask_run_scoped",
    requirements=multiple_process_executor_requirements(),
    config_schema={"cluster": dg.Field(dg.Selector({"existing": dg.Field({"address": dg.StringSource})}))},
)
def dask_run_scoped_executor(init_context: dg.InitExecutorContext) -> RunScopedDaskExecutor:
    """Steps on the workers of an existing Dask cluster, under run-scoped task keys."""
    cluster: dict[str, Any] = init_context.executor_config["cluster"]  # type: ignore[assignment]
    ((cluster_type, cluster_configuration),) = cluster.items()
    return RunScopedDaskExecutor(cluster_type, cluster_configuration)
