"""``pgenrm prototypes ...``: rebuild and inspect user prototypes (imports are lazy)."""

from __future__ import annotations

from typing import Annotated

import typer

prototypes_app = typer.Typer(no_args_is_help=True, help="Build and inspect user prototypes.")


@prototypes_app.command()
def rebuild(
    k: Annotated[int, typer.Option(help="Number of prototypes (the paper's 50).")] = 50,
    epochs: Annotated[int, typer.Option(help="Refinement epochs.")] = 1,
    seed: Annotated[int, typer.Option(help="K-means and training seed.")] = 0,
    lr: Annotated[float, typer.Option(help="Refinement learning rate.")] = 1e-4,
    max_train_users: Annotated[int, typer.Option(help="Users sampled for training.")] = 5000,
    resume: Annotated[bool, typer.Option(help="Resume an interrupted rebuild.")] = True,
) -> None:
    """K-means over stored users, attentive refinement, reassign everyone; writes a report."""
    from rich.console import Console

    from infra.settings import Settings
    from prototypes.rebuild import rebuild as run
    from prototypes.refine import RefineConfig

    rep = run(
        Settings(),
        k=k,
        epochs=epochs,
        seed=seed,
        config=RefineConfig(lr=lr, seed=seed),
        resume=resume,
        max_train_users=max_train_users,
    )
    Console().print(
        f"rebuilt {len(rep.sizes)} prototypes over {rep.users_with_vector} users; "
        f"loss {rep.initial_loss:.4f} -> {rep.losses[-1] if rep.losses else float('nan'):.4f}; "
        f"report in {rep.out_dir}/report.md"
    )


@prototypes_app.command()
def show(
    limit: Annotated[int, typer.Option(help="Show at most this many prototypes.")] = 100,
) -> None:
    """List the stored prototypes (size, online accuracy, refined, version)."""
    from rich.console import Console
    from rich.table import Table

    from infra.settings import Settings
    from prototypes.stores import open_stores

    stores = open_stores(Settings())
    try:
        protos = stores.prototypes.all()
        table = Table(title=f"{len(protos)} prototypes, {stores.users.count()} users")
        for col in ("id", "size", "online acc", "outcomes", "refined", "version"):
            table.add_column(col, justify="right")
        for p in sorted(protos, key=lambda p: -p.size)[:limit]:
            acc = p.online_accuracy
            table.add_row(
                str(p.prototype_id), str(p.size), "-" if acc is None else f"{acc:.3f}",
                str(p.outcomes), "yes" if p.refined else "no", str(p.version),
            )  # fmt: skip
        Console().print(table)
    finally:
        stores.close()
