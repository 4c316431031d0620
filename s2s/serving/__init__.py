"""HTTP serving of trained models (``s2s serve``), built on LitServe: the per-model APIs
(``apis``), what a request may ask (``requests``), the server and its page (``server``)."""
