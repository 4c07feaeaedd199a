"""The HTTP baseline: a trivial FastAPI app with the API's two routes, under the same uvicorn.

    .venv/bin/python benchmarks/trivial_app.py PORT

POST /api/orders validates the same body as ``order-system serve`` and answers 201 with a
constant; POST /api/orders/{id}/{action} (the commands, for ``benchmarks/command_latency.py``)
answers 202 with a constant; GET /api/orders/{id} answers a constant. It runs under ``serve``'s
own uvicorn server (``order_system.interfaces.api._uvicorn_server``), so the difference measured against
``serve`` is the order system's work, not the server's.
"""

from __future__ import annotations

import sys

from fastapi import FastAPI, Query

from order_system.interfaces.schemas import CreateOrder

from order_system.interfaces.serve import _uvicorn_server


def trivial_app() -> FastAPI:
    app = FastAPI()

    @app.post("/api/orders", status_code=201)
    def create(body: CreateOrder) -> dict[str, object]:
        return {"orderId": "00000000", "message": "accepted", "status": "CREATED", "partition": 0, "offset": 0}

    @app.post("/api/orders/{order_id}/{action}", status_code=202)
    def advance(order_id: str, action: str, customer_id: str = Query(alias="customerId")) -> dict[str, object]:
        return {"orderId": order_id, "status": action.upper(), "version": 2, "message": f"{action} accepted",
                "partition": 0, "offset": 0}

    @app.get("/api/orders/{order_id}")
    def get(order_id: str) -> dict[str, object]:
        return {"orderId": order_id, "customerId": body_customer, "status": "CREATED", "version": 1}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


body_customer = "customer-1"

if __name__ == "__main__":
    _uvicorn_server(trivial_app(), "127.0.0.1", int(sys.argv[1])).run()
