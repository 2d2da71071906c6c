"""The data verbs (``python -m dgqa_data VERB``, also part of ``dgqa``): a registry of verb name ->
module and help line (:data:`VERBS`), read by :mod:`dgqa_data.cli`.

A verb's module is imported only when that verb is on the command line; it provides
``add_arguments(parser)`` (the verb's flags, next to its code) and ``run(args)``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verb:
    """One sub-command: its name and help line, and where its flags and code live.

    Attributes:
        name: the sub-command, e.g. ``"build"``.
        help: the line shown by ``--help``.
        module: imported only when this verb runs (or its ``--help`` is asked for).
        add: function of ``module`` adding the verb's flags to its parser.
        run: function of ``module`` running the verb with the parsed flags; returns an exit code or
            anything else (exit code 0).
        passthrough: hand every argument unparsed to ``module.main(argv, prog=...)`` (verbs whose
            flags come from a config parser, e.g. ``train``).
    """

    name: str
    help: str
    module: str
    add: str = "add_arguments"
    run: str = "run"
    passthrough: bool = False


#: The data verbs, in the order ``--help`` lists them. None needs torch.
VERBS: tuple[Verb, ...] = (
    Verb("build", "build a Hub-layout dataset from an official corpus download", "dgqa_data.build"),
    Verb("synth", "generate a KADIS-style synthetic dataset (25 types x 5 levels)", "dgqa_data.synth"),
    Verb(
        "select",
        "choose the source domains similar to a scored target (DGQA rule), or a published selection",
        "dgqa_data.selection",
    ),
    Verb(
        "subset",
        "write a DGQA-selected subset (or a control) of a built corpus",
        "dgqa_data.subsets",
        add="subset_arguments",
        run="run_subset",
    ),
    Verb(
        "hydrate",
        "re-attach the images of an index-only dataset from your own download",
        "dgqa_data.hydrate",
    ),
    Verb("splits", "export or import a dataset's published train/test splits (CSV)", "dgqa_data.split_files"),
    Verb("publish", "upload a dataset folder to the Hugging Face Hub (only what changed)", "dgqa_data.publish"),
)
