"""Sandbox: a stand-in HTTP server for MusicBrainz, Cover Art Archive, Discogs, Cloudflare Images and
Spotify, speaking their real paths and JSON shapes from fixtures shipped in this package.

    with SandboxServer() as sandbox:                      # in-process, port 0, background thread
        settings = Settings(**sandbox.settings_overrides())
        sandbox.add_fault("/musicbrainz/ws/2/release/", status=503, retry_after=2, times=1)

    pgjobs sandbox serve --port 8765                      # the CLI calls serve(host, port)
"""

from pgjobs.enrichment.sandbox.exchange import SandboxCredentials
from pgjobs.enrichment.sandbox.lifecycle import DEFAULT_HOST, DEFAULT_PORT, SandboxServer, serve, settings_overrides

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "SandboxCredentials", "SandboxServer", "serve", "settings_overrides"]
