r"""acp-params: print ACP's parameter and MACC counts by module beside Table III's (analytic, `acp.params`).

    acp-params --preset=basic --k1=25
    acp-params --preset=xl --k1=50 --k2=6 --override=memory_size=4
"""
from absl import flags

from acp import model as acp_model
from acp import params
from engine import cli

FLAGS = cli.new_flags()
flags.DEFINE_enum("preset", "basic", sorted(acp_model.PRESETS), "ACP preset of Table II.", flag_values=FLAGS)
flags.DEFINE_integer("k1", 25, "Length of the neighbour sequence (probe included).", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("k2", 6, "Length of the refinement sequence (clipped to k1).", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_multi_string("override", [], "ACPConfig field as NAME=VALUE, repeatable, e.g. num_layers=2, "
                          "use_memory=false, block_dims=256:512:1024.", flag_values=FLAGS)


def main(argv):
    del argv
    overrides = cli.parse_assignments(FLAGS["override"].value, acp_model.ACPConfig, "--override")
    config = acp_model.make_config(FLAGS["preset"].value, **overrides)
    print(params.format_report(config, FLAGS["k1"].value, FLAGS["k2"].value, preset=FLAGS["preset"].value))


def run():
    cli.run(main, FLAGS, __doc__)


if __name__ == "__main__":
    run()
