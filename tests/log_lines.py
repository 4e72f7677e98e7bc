"""A logging handler that keeps every record it is given, for tests that read what a service
logged (fields included) from the one logger they attach it to, whatever its propagation."""
import logging


class Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)
