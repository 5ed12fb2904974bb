"""`wfp seed transactions`, `wfp eval fraud` and `wfp simulate stream`: click commands the main CLI registers.

    from workflow_platform.cli.fraud import eval_fraud, seed_transactions, simulate
    seed_group.add_command(seed_transactions)   # -> wfp seed transactions
    eval_group.add_command(eval_fraud)          # -> wfp eval fraud
    main.add_command(simulate)                  # -> wfp simulate stream

Importing this module is cheap (click only); numpy, pandas, scikit-learn and the service clients are
imported when a command runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("transactions")
@click.option("--customers", default=5000, show_default=True, help="number of simulated customers (cards)")
@click.option("--terminals", default=10000, show_default=True, help="number of simulated terminals")
@click.option("--days", default=183, show_default=True, help="number of simulated days")
@click.option("--start", default="2018-04-01", show_default=True, help="first simulated day (UTC)")
@click.option(
    "--profiles/--no-profiles",
    default=True,
    show_default=True,
    help="also fill orchestrator.customer_profiles",
)
@click.option(
    "--nats-rate",
    type=float,
    default=None,
    help="also replay the transactions onto NATS JetStream (subject transactions.new) at this many "
    "messages per second; 0 = as fast as possible",
)
@click.option(
    "--cache-dir", type=click.Path(path_type=Path), default=None, help="default: $WFP_HOME/cache/fraud"
)
def seed_transactions(
    customers: int,
    terminals: int,
    days: int,
    start: str,
    profiles: bool,
    nats_rate: float | None,
    cache_dir: Path | None,
) -> None:
    """Simulate the handbook's transactions and load them into PostgreSQL (WFP_PG_ADMIN_DSN), idempotently.

    The defaults are the handbook's dataset (1,754,155 transactions, 14,681 frauds). Loading the same
    parameters again inserts nothing; prints the counts as JSON.
    """
    from workflow_platform.demo_data.fraud_load import dataset_source, load_transactions, replay_to_nats
    from workflow_platform.demo_data.fraud_simulator import SimulationConfig, simulate_cached

    config = SimulationConfig(n_customers=customers, n_terminals=terminals, nb_days=days, start_date=start)
    dataset = simulate_cached(config, cache_dir)
    report: dict = {"config": config.__dict__, "postgres": load_transactions(dataset, profiles=profiles)}
    if nats_rate is not None:
        report["nats"] = replay_to_nats(dataset.transactions, dataset_source(dataset), rate=nats_rate or None)
    click.echo(json.dumps(report, indent=2))


@click.command("fraud")
@click.option(
    "--models",
    "model_names",
    multiple=True,
    help="model(s) to evaluate (repeat or comma-separate); default: every available candidate",
)
@click.option("--json", "as_json", is_flag=True, help="print the figures as JSON")
@click.option("--save", is_flag=True, help="store the best model in the object store (models/fraud/...)")
@click.option(
    "--cache-dir", type=click.Path(path_type=Path), default=None, help="default: $WFP_HOME/cache/fraud"
)
def eval_fraud(model_names: tuple[str, ...], as_json: bool, save: bool, cache_dir: Path | None) -> None:
    """Run the handbook's evaluation protocol and print each model's figures next to the handbook's.

    Train 2018-07-25..31, delay 08-01..07, test 08-08..14 on the simulated dataset (cached after the first
    run); AUC ROC, average precision and card precision@100 per model.
    """
    from workflow_platform.demo_data.fraud_handbook import evaluate_handbook
    from workflow_platform.fraud.model import CANDIDATES, available_models, save_model

    names = [n.strip() for value in model_names for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        raise click.BadParameter(
            f"unknown {unknown}; choose from {available_models()}", param_hint="--models"
        )
    evaluation = evaluate_handbook(names or None, cache_dir)
    report = evaluation.to_dict()
    if save:
        best = evaluation.best()
        report["saved"] = {"model": best.name, "version": save_model(best.model)}
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(evaluation.table())
        if save:
            click.echo(f"saved {report['saved']['model']} as version {report['saved']['version']}")


@click.group("simulate")
def simulate() -> None:
    """Simulated live traffic for the real-time paths."""


@simulate.command("stream")
@click.option("--rate", type=float, required=True, help="transactions per second")
@click.option("--duration", type=float, required=True, help="seconds to publish for")
@click.option("--subject", default="transactions.new", show_default=True, help="the JetStream subject")
@click.option("--customers", default=5000, show_default=True, help="number of simulated customers (cards)")
@click.option("--terminals", default=10000, show_default=True, help="number of simulated terminals")
@click.option("--days", default=183, show_default=True, help="number of simulated days")
@click.option("--start", default="2018-04-01", show_default=True, help="first simulated day (UTC)")
@click.option(
    "--cache-dir", type=click.Path(path_type=Path), default=None, help="default: $WFP_HOME/cache/fraud"
)
def simulate_stream(
    rate: float,
    duration: float,
    subject: str,
    customers: int,
    terminals: int,
    days: int,
    start: str,
    cache_dir: Path | None,
) -> None:
    """Publish the simulator's transactions onto NATS JetStream (WFP_NATS_URL) at RATE per second for DURATION
    seconds, in time order: what the streaming fraud pipeline (`python -m workflow_platform.fraud_stream`) reads.

    Each run goes on after the last transaction an earlier one published (each message's Nats-Msg-Id is
    `<dataset>:<TRANSACTION_ID>`), so runs one after the other play the dataset as one stream. Prints the
    counts as JSON.
    """
    from workflow_platform.demo_data.fraud_load import dataset_source, replay_to_nats
    from workflow_platform.demo_data.fraud_simulator import SimulationConfig, simulate_cached

    if rate <= 0 or duration <= 0:
        raise click.BadParameter("--rate and --duration must be positive")
    config = SimulationConfig(n_customers=customers, n_terminals=terminals, nb_days=days, start_date=start)
    dataset = simulate_cached(config, cache_dir)
    report = replay_to_nats(
        dataset.transactions, dataset_source(dataset), rate=rate, subject=subject, limit=int(rate * duration)
    )
    click.echo(json.dumps(report, indent=2))
