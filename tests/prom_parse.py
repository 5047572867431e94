#!/usr/bin/python3
"""Parses a Prometheus text exposition (stdin) with prometheus_client, the Prometheus project's
own Python library, and prints what it understood as JSON: every family's name and type, and
every sample's name, labels and value. The metrics test reads it; a text the library refuses
makes this exit non-zero with the library's error."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

families = []
for family in text_string_to_metric_families(sys.stdin.read()):
    families.append({
        "name": family.name,
        "type": family.type,
        "samples": [
            {"name": s.name, "labels": s.labels, "value": s.value} for s in family.samples
        ],
    })
json.dump(families, sys.stdout)
