"""Source vs converted: one engine for card and graph sources (docs/conversion.md, validate).

    inputs.py  the one input maker: the same images for both sides, each prepared by its
               contract as `caffezoo eval` prepares them (evaluation/preprocess.py)
    engine.py  the one comparison: the net open in a runtime (`open_caffe`), outputs over every
               input and, with a layer pass, every tensor both sides compute
    card.py    a card source's side: the classifier's output, the plan's modules in the net
    graph.py   a graph source's side: its outputs and IR values, found in the net by name
    report.py  one record per compared tensor (`Diff`), one `Report`, its verdict and text

The commands hand it a source runner (caffezoo/source_runner.py, implemented by the
converters) and the net; nothing here imports the converters.
"""
