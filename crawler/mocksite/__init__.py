"""A local stand-in for movie.douban.com, for developing and testing the crawler offline.

`catalogue` generates a deterministic synthetic catalogue shaped like Douban's; `site` serves it over HTTP on
127.0.0.1 with fault knobs (`kadn mock-douban`, or `python -m crawler.mocksite`). It is part of the package so
that tests, benchmarks and the command import it like any other module; the crawl itself never uses it.
"""
