"""`python -m data.synthetic`: the reid-synthetic binary (`data.cli.synthetic`), for commands written before it moved."""
from data.cli.synthetic import run

if __name__ == "__main__":
    run()
