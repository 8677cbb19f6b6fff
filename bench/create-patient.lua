-- wrk script: POST a realistic Patient (validation, indexing and a durable commit each)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.headers["Prefer"] = "return=minimal"
wrk.body = [[{"resourceType":"Patient","identifier":[{"system":"http://medkarta.ru/identifier/snils","value":"112-233-445 95"}],
"active":true,"name":[{"use":"official","family":"Иванова","given":["Анна","Петровна"]}],"gender":"female","birthDate":"1980-04-12",
"telecom":[{"system":"phone","value":"+7 912 345-67-89","use":"mobile"}],
"address":[{"use":"home","city":"Москва","country":"RU","line":["ул. Ленина, д. 1, кв. 2"]}],
"managingOrganization":{"reference":"Organization/demo-org-1"}}]]
