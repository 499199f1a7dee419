"""An erasure from mParticle reaches Customer.io through a real Celery worker, woken on commit."""

import pytest

from connections.models import ErasureCall
from tests.support.erasure import CUSTOMER_ID, PERSONAL, dsr_message, forwarded_person, post_dsr, tables_holding
from tests.support.workers import purge_broker, running_workers, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.mark.parametrize("transport", ["v2_batch", "v1"])
def test_a_dsr_is_sent_to_customerio_by_a_worker(transport, standin, workspace_connection):
    purge_broker()
    connection = workspace_connection("site-us", transport=transport, erasure="suppress")
    forwarded_person(connection)

    with running_workers(standin.url):
        assert post_dsr(dsr_message()).status_code == 200
        wait_until(
            lambda: ErasureCall.objects.filter(status="succeeded").exists(), message="the worker to suppress the person"
        )

    assert CUSTOMER_ID not in standin.people("site-us")
    [request] = [r for r in standin.requests("site-us") if r.path.endswith("/suppress")]
    assert request.status == 200 and request.method == "POST"
    assert tables_holding(*PERSONAL) == {}
