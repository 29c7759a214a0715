"""A local stand-in for movie.douban.com: a test and benchmark fixture, not part of the installed package.

`catalogue` generates a deterministic synthetic catalogue shaped like Douban's; `site` serves it over HTTP on
127.0.0.1 with fault knobs (`kadn mock-douban` from a source checkout, or `python -m tests.mockserver`).
"""
