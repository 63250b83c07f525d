"""The workflow floor: projects (kiloml.toml, dataset, model folder), step caching and one
module per step. Stages below never see a project; the CLI above calls into here."""
