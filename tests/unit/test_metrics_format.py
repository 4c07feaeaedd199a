"""The metrics module's pure parts: parsing the text format, bounded labels."""

from __future__ import annotations

from types import SimpleNamespace

from order_system.interfaces.metrics import UNMATCHED, _method, _route, parse_metrics


def test_parse_metrics_reads_the_text_format() -> None:
    text = ('# HELP order_system_records_handled_total x\n# TYPE order_system_records_handled_total counter\n'
            'order_system_records_handled_total{group="g"} 3.0\nother_total 1.0\n')
    frame = parse_metrics(text)
    assert frame.to_dict(orient="records") == [{"name": "order_system_records_handled_total", "group": "g",
                                                 "value": 3.0}]


def test_labels_are_route_templates_and_known_methods_only() -> None:
    route = SimpleNamespace(path="/api/orders/{order_id}")
    assert _route({"route": route, "path": "/api/orders/o-123"}) == "/api/orders/{order_id}"
    assert _route({"path": "/wp-admin/../../etc/passwd"}) == UNMATCHED
    assert _method({"method": "POST"}) == "POST"
    assert _method({"method": "X" * 500}) == "OTHER"
