import click


@click.command("label")
def label_command() -> None:
    """(being written)"""
