"""Parses otpd's /metrics with the Prometheus Python client's OpenMetrics parser
(prometheus-client from PyPI), the strict one: it refuses anything that is not valid
OpenMetrics text (a missing `# EOF`, a bad label, a counter without `_total`, …).

Usage: parse_metrics.py < metrics.txt
Prints one JSON object: {"families": {name: type}, "samples": [[name, labels, value], ...]}.
Exits non-zero (with the parser's message) when the text does not parse.
"""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main():
    text = sys.stdin.read()
    families = {}
    samples = []
    for family in text_string_to_metric_families(text):
        families[family.name] = family.type
        for s in family.samples:
            samples.append([s.name, s.labels, s.value])
    print(json.dumps({"families": families, "samples": samples}))


if __name__ == "__main__":
    main()
