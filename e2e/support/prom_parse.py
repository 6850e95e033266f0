#!/usr/bin/env python3
"""Parse a Prometheus text exposition (stdin) with the reference Python client's parser
(prometheus_client.parser.text_string_to_metric_families) and print the families as JSON:

    {"families": [{"name", "type", "documentation", "samples": [{"name", "labels", "value"}]}],
     "sample_lines": <non-comment, non-empty lines in the body>,
     "type_lines": <"# TYPE" lines in the body>}

Exit 1 with the parser's error on stderr when the body does not parse. The two line counts let
the caller check that every sample and family of the body went through the parser (the
parser skips comment lines other than HELP/TYPE, nothing else).
"""
import json
import sys

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # pragma: no cover
    sys.stderr.write("prometheus_client is not installed (pip install prometheus_client; scripts/test.sh does it)\n")
    sys.exit(2)


def main():
    text = sys.stdin.read()
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as err:  # the parser raises ValueError (and others) on malformed input
        sys.stderr.write(f"parse error: {type(err).__name__}: {err}\n")
        sys.exit(1)
    out = {
        "families": [
            {
                "name": f.name,
                "type": f.type,
                "documentation": f.documentation,
                "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples],
            }
            for f in families
        ],
        "sample_lines": sum(1 for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#")),
        "type_lines": sum(1 for l in text.splitlines() if l.startswith("# TYPE ")),
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
