"""DualCamCtrl as a DiffSynth-Studio 2.x plugin."""
