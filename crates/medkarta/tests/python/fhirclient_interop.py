"""Drives a running Medkarta with the SMART on FHIR Python client (fhirclient 4.x, R4
models): create, read, update, search, delete. Usage: fhirclient_interop.py BASE_URL TOKEN.
Exits non-zero with a message on the first mismatch."""
import sys

from fhirclient import client
from fhirclient.models.humanname import HumanName
from fhirclient.models.identifier import Identifier
from fhirclient.models.patient import Patient
from fhirclient.models.fhirdate import FHIRDate

base = sys.argv[1]
smart = client.FHIRClient(settings={"app_id": "medkarta-interop-test", "api_base": base})
server = smart.server
server.session.headers.update({"Authorization": f"Bearer {sys.argv[2]}"})

capability = server.capabilityStatement if hasattr(server, "capabilityStatement") else None
if capability is not None:
    assert capability.fhirVersion == "4.0.1", capability.fhirVersion

p = Patient()
name = HumanName()
name.family = "Клиентова"
name.given = ["Ольга", "Игоревна"]
p.name = [name]
p.gender = "female"
p.birthDate = FHIRDate("1975-03-08")
ident = Identifier()
ident.system = "http://medkarta.ru/identifier/snils"
ident.value = "112-233-445 95"
p.identifier = [ident]

created = p.create(server)
pid = created["id"] if isinstance(created, dict) else p.id
assert pid, f"no id in create response: {created}"

read = Patient.read(pid, server)
assert read.name[0].family == "Клиентова", read.as_json()
assert read.meta.versionId == "1", read.meta.as_json()
assert read.birthDate.isostring == "1975-03-08"

read.gender = "other"
read.update(server)
again = Patient.read(pid, server)
assert again.gender == "other" and again.meta.versionId == "2", again.as_json()

found = Patient.where(struct={"identifier": "http://medkarta.ru/identifier/snils|112-233-445 95"}).perform_resources(server)
assert [r.id for r in found] == [pid], [r.id for r in found]
found = Patient.where(struct={"family": "клиентова"}).perform_resources(server)
assert len(found) == 1

again.delete()
try:
    Patient.read(pid, server)
    raise AssertionError("read after delete must fail")
except Exception as e:  # fhirclient raises requests' HTTPError
    assert "410" in str(e), e

print("fhirclient interop: OK")
