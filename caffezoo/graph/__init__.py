"""A small source-graph representation (ir) and the one emitter that turns it into Caffe."""
