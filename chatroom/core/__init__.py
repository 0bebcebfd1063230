"""The pure core: codecs, sequencer, directory and timed behaviours; no I/O."""
