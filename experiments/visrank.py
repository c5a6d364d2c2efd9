"""`python -m experiments.visrank`: the reid-visrank binary (`experiments.cli.visrank`), for commands written before
it moved."""
if __name__ == "__main__":
    from experiments.cli.visrank import run

    run()
