"""Project commands for `scrapy` (COMMANDS_MODULE): `crawl` with an exit status that tells failure apart."""
