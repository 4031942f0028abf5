import click


@click.command("eval")
def eval_command() -> None:
    """(being written)"""
