"""moto's server for the tests: `python3 test/helpers/moto_server.py -H 127.0.0.1 -p 0`.

The same as `python3 -m moto.server`, with two fixes:

- moto 5.2.1 parses the `creation_date` of the AMIs loaded from MOTO_AMIS_PATH in place, so the
  second load (after `POST /moto-api/reset`) parses a datetime again and the reset answers 500.
  Dates that are already parsed are passed through.
- S3's conditional writes (`If-None-Match: *` on PutObject and CompleteMultipartUpload) are atomic:
  of two at once, one wins and the other gets 412. moto checks, then writes, in a threaded server,
  so two at once could both win. A conditional write holds its key's lock from the check to the
  write: one lock per key, so writes of different keys still run in parallel, as on S3.
"""
import datetime
import threading

import moto.ec2.models.amis as amis

_parse = amis.parse_timestamp


def _parse_once(value):
    return value if isinstance(value, datetime.datetime) else _parse(value)


amis.parse_timestamp = _parse_once

from moto.s3.responses import S3Response  # noqa: E402

_guard = threading.Lock()
_key_locks = {}


def _key_lock(response):
    # Path-style (`/bucket/key`) or virtual-hosted (`bucket.host`, `/key`): the host and path name the key.
    name = (response.headers.get("Host", ""), response.path)
    with _guard:
        return _key_locks.setdefault(name, threading.Lock())


def _atomic_if_none_match(method):
    def wrapper(self, *args, **kwargs):
        if self.headers.get("If-None-Match") != "*":
            return method(self, *args, **kwargs)
        with _key_lock(self):
            return method(self, *args, **kwargs)

    return wrapper


S3Response.put_object = _atomic_if_none_match(S3Response.put_object)
S3Response._key_response_post = _atomic_if_none_match(S3Response._key_response_post)

from moto.server import main  # noqa: E402

if __name__ == "__main__":
    main()
