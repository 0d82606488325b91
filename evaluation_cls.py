#!/usr/bin/env python
"""ImageNet accuracy of a Caffe classifier, the way the original zoo's evaluation_cls.py measured
it (1/12/144-crop, plus Caffe's 10-crop), with options instead of edited globals.

    python evaluation_cls.py --prototxt deploy.prototxt --weights model.caffemodel \\
        --val-list ILSVRC2012_val.txt --data-root ~/Database/ILSVRC2012 --crop-num 12

The same code as `caffezoo eval`, with the same options (docs/evaluation.md).
"""

import sys

from caffezoo.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    debug = ["--debug"] if "--debug" in argv else []
    rest = [a for a in argv if a != "--debug"]
    sys.exit(main([*debug, "eval", *rest]))
