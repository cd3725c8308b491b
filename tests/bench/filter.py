# filter.py: the "decode + filter" loop of tests/bench/stages.lua in python3, with the
# standard json module or with ujson (UltraJSON, Debian python3-ujson), for
# tests/bench/run.sh. Line for line what the lua-cjson loop does: decode every line of FILE,
# select the records the two bundled Bedrock rules alert on (the same raw CloudTrail fields
# jq's filter tests) and count them.
#
#   python3 tests/bench/filter.py json|ujson FILE
#
# Prints "filter records=N matches=M", as stages.lua does.
import importlib
import sys

ACTIONS = {
    "PutFoundationModelEntitlement", "PutUseCaseForModelAccess",
    "CreateFoundationModelAgreement", "PutResourcePolicy", "DeleteResourcePolicy",
}


def main(module, path):
    loads = importlib.import_module(module).loads
    records = matches = 0
    # Bytes, as lua reads them: loads takes UTF-8 bytes, no str made first.
    with open(path, "rb", buffering=1 << 20) as f:
        for line in f:
            records += 1
            rec = loads(line)
            code = rec.get("errorCode")
            if (rec.get("eventSource") == "bedrock.amazonaws.com" and rec.get("eventName") in ACTIONS
                    and (code == "AccessDenied" or code == "AccessDeniedException")):
                matches += 1
    print(f"filter records={records} matches={matches}")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("json", "ujson"):
        sys.exit("usage: python3 tests/bench/filter.py json|ujson FILE")
    main(sys.argv[1], sys.argv[2])
