"""Helpers shared by the test modules (pytest puts `tests/` on `sys.path`): `helpers.training` (models,
data and launches for the training tests), `helpers.ensembles` (snapshot folders for the ensemble, loading
and Hub tests), `helpers.hub` (the push tests' token and online switch). Test modules import from here,
never from each other."""
