"""``w2x serve``: the waifu2x web page and HTTP API (optional extra ``pip install w2x[web]``).

Modules, each with one job:

* ``errors``   -- ``WebError``: an HTTP status, a sentence for a person, extra headers;
* ``limits``   -- the original's size limits (web.lua) and the automatic TTA level;
* ``fields``   -- the ``/api`` form fields -> a validated ``ConvertRequest``;
* ``probe``    -- format and size of uploaded bytes from the header, before decoding;
* ``engine``   -- bytes in, converted image bytes out (w2x.io + w2x.anyscale);
* ``cache``    -- bounded result cache keyed by content hash and options;
* ``jobs``     -- bounded worker pool and queue, progress, cancel;
* ``urlfetch`` -- guarded server-side fetch of ``url`` (off unless asked for);
* ``i18n``     -- the page's language from ``Accept-Language``;
* ``app``      -- the Starlette application: routes, JSON errors, access log;
* ``cli``      -- ``w2x serve`` options and the uvicorn runner.
"""
