"""A client of a running mailconnect service, for the `mailconnect import`, `status` and
`accounts list` commands: HTTP in `http`, the polling loop in `watch`, what is shown in
`render`. Nothing here touches the database; everything goes through the public API."""
