"""Pipelines that join the roles: the Reenactor inference API, per-frame reenactment, and batch
export. The app, the exporter CLI and the evaluator call these; they call nn/, face/ and media/."""
