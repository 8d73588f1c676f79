"""The attribution lens: which earlier characters made the model write each character?

Seven files, in the order a reader meets them:

    paths.py          the straight-line path and its quadrature, the targets F, batching rows
    integration.py    integrating each target's path to a tolerance (adaptive pieces)
    methods.py        integrated gradients, saliency, gradient*input, occlusion: `attribute`
    result.py         Attribution: the scores and their completeness checks; save and load
    views.py          the terminal view, the HTML page, the figures
    faithfulness.py   deletion/insertion curves, AOPC, the model-randomisation check
    cli.py            `python -m nanogpt.attribution.cli` (make attribute)

Names are imported from the file that defines them: `from nanogpt.attribution.methods import
attribute`.
"""
