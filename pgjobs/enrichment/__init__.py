"""pgjobs.enrichment: the music-catalog enrichment chain running on the pgjobs queue.

ENRICH_ALBUM (root) → ENRICH_ARTIST → DISCOGS_SEARCH_ARTIST → DISCOGS_GET_ARTIST →
CACHE_ARTIST_IMAGE; CACHE_ALBUM_COVER; SPOTIFY_TRACK_FALLBACK. Every attempt writes exactly one
enrichment_log row in the transaction that records its outcome, its entity updates and its children.
REENRICH_STALE_ALBUMS, a periodic maintenance job, starts chains for albums not enriched lately.
"""
