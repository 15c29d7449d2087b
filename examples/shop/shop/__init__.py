"""The shop: KubeFabric's example app. One CRD (Order, shop.example.com) served three ways:
a pricing function fed by an HTTPTrigger (function.py), an operator that keeps an invoice per
order (operator.py) and a REST report served by the aggregation service (report.py). It is a
plain Kubernetes app: it talks to kube-apiserver only, never to KubeFabric directly."""
