"""moto's server for the tests: `python3 test/helpers/moto_server.py -H 127.0.0.1 -p 0`.

The same as `python3 -m moto.server`, with one fix: moto 5.2.1 parses the `creation_date` of the
AMIs loaded from MOTO_AMIS_PATH in place, so the second load (after `POST /moto-api/reset`) parses
a datetime again and the reset answers 500. Dates that are already parsed are passed through.
"""
import datetime

import moto.ec2.models.amis as amis

_parse = amis.parse_timestamp


def _parse_once(value):
    return value if isinstance(value, datetime.datetime) else _parse(value)


amis.parse_timestamp = _parse_once

from moto.server import main  # noqa: E402

if __name__ == "__main__":
    main()
