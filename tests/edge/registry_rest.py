"""Fixture registration over REST: moved to registry_tools.bundle_rest (bench/ and scripts/ use it too), re-exported."""
from registry_tools.bundle_rest import (  # noqa: F401
    EXPERIMENT, FIXTURES, MlflowRest, Registered, RestError, copy_bundle, disagreeing_bundle, fixture_bundle,
    fixture_metrics, fixture_tags, fixture_variants, register_bundle, register_fixture, rewrite_manifest,
)
