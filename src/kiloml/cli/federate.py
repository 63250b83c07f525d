"""``kiloml federate``: federated fine-tuning of the classifier head across a fleet of
clients (one folder each) with Flower on Ray (kiloml.workflow.federate)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kiloml.cli.common import (PROJECT_OPT, app, command_line, emit_json, fail, guard, out,
                               project_dir, table)


@app.command()
def federate(
    clients: Path = typer.Option(..., "--clients", help="A folder with one sub-folder per "
                                                        "client (device), each laid out like "
                                                        "an import (a folder per label)."),
    rounds: int = typer.Option(5, "--rounds", help="Federated rounds."),
    strategy: str = typer.Option("fedavg", "--strategy", help="fedavg or fedprox."),
    address: Optional[str] = typer.Option(None, "--address",
                                          help="A Ray cluster (HOST:PORT or ray://HOST:PORT); "
                                               "default: a private local Ray instance."),
    holdout: str = typer.Option("2", "--holdout",
                                help="Clients that never train and measure the result: a "
                                     "count (the last ones in name order) or names, comma-"
                                     "separated."),
    epochs: int = typer.Option(1, "--epochs", help="Local passes per client and round."),
    lr: float = typer.Option(0.02, "--lr", help="Learning rate of the update."),
    mu: float = typer.Option(1.0, "--mu", help="FedProx's proximal weight."),
    project: Optional[Path] = PROJECT_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Fine-tune the classifier head across the CLIENTS folders with Flower (each client runs
    the on-device update's twin on its own data; the server averages the int8 heads) and
    report, per round, the accuracy on held-out clients, the bytes each client sends, and
    the comparison with centralized fine-tuning. The project's model is not changed."""
    from kiloml.workflow.federate import STRATEGIES

    if strategy not in STRATEGIES:
        fail(f"--strategy {strategy}: one of {', '.join(STRATEGIES)}", 2)
    if rounds < 1 or epochs < 1:
        fail(f"--rounds {rounds} --epochs {epochs}: at least 1 each", 2)
    if not lr > 0 or mu < 0:
        fail(f"--lr {lr} --mu {mu}: the learning rate > 0, mu >= 0", 2)

    def go():
        from kiloml.workflow.federate import FederateSettings, federate_project
        from kiloml.workflow.project import load_project

        s = FederateSettings(rounds=rounds, strategy=strategy, epochs=epochs, lr=lr, mu=mu)
        p = load_project(project_dir(project))
        r = federate_project(p, clients, s, holdout=holdout, address=address,
                             command=command_line())
        if as_json:
            emit_json(r)
            return
        b = r["bytes_per_client_per_round"]
        t = table(f"federated ({r['strategy']}, {len(r['training_clients'])} clients, "
                  f"held out: {', '.join(r['held_out_clients'])})",
                  [("round", "r"), ("held-out accuracy", "r"), ("bytes down/client", "r"),
                   ("bytes up/client", "r")])
        for row in r["per_round"]:
            t.add_row(str(row["round"]), f"{100 * row['held_out_accuracy']:.2f} %",
                      str(row.get("bytes_down_per_client", "")),
                      str(row.get("bytes_up_per_client", "")))
        out.print(t)
        out.print(f"start {100 * r['accuracy_start']:.2f} %, federated "
                  f"{100 * r['accuracy_federated']:.2f} %, centralized fine-tuning "
                  f"{100 * r['accuracy_centralized']:.2f} % (same update, pooled data); "
                  f"the trainable part is {b['trainable_part']} B, its message "
                  f"{b['message']} B each way per client per round")

    guard(go)
