"""Tracking: open pixel, click redirects, unsubscribe and the preference
centre, machine-activity detection.

- `links` is what the delivery pipeline calls while it builds a message
  (`rewrite_html`, `unsubscribe_headers`, `unsubscribe_url`): pure functions,
  no database. Tracking never imports delivery.
- Every link carries an HMAC-signed token (`tokens`) naming workspace,
  message, contact and list (and, for a click, its URL: no open redirect);
  a forged or foreign token changes nothing and gets a 404.
- Opens and clicks are events (`message.opened`, `message.clicked`) labelled
  `machine` with a `reason` (`bots`); only human ones move the message's
  counters.
- Unsubscribes change consent through the contacts services (consent record,
  `contact.unsubscribed`), suppress on "everything", and emit
  `message.unsubscribed`.
"""
