"""Production static files: WhiteNoise's compressed, content-hashed files, ES-module imports included.

The dashboard's pages are native ES modules that import each other by relative path
(``jobs/static/jobs/dashboard/``). Django's manifest storage rewrites those imports to the hashed
names only when asked; without that, a hashed (cached-forever) entry module would load unhashed
siblings, which WhiteNoise caches for only a minute, so a deploy could briefly mix old and new
modules in one page.
"""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    """``CompressedManifestStaticFilesStorage`` that also hashes ``import``/``export … from`` paths in JS."""

    support_js_module_import_aggregation = True
