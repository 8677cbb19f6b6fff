#!/usr/bin/env python3
"""Preprocess the official FHIR R4 definitions into the compact form Medkarta embeds.

Reads ../shared/fhir/r4 (or the directory given as the first argument) and writes
crates/fhir-spec/data/r4.json.gz. Run it again only when the definitions change; the
output is committed so that a build needs neither Python nor the shared directory.

What is kept:
  types        every resource and data type: kind, base, abstract, its own invariants,
               (resources) the top-level elements in the summary view,
               and its elements (relative path, min, max, type codes, required binding,
               reference targets, contentReference, invariants [key, FHIRPath, text])
  valueSets    expansions ({system: [codes]}) of every value set bound with strength
               `required`; null where the set cannot be enumerated (filters on
               external code systems, grammars such as BCP-47)
  searchParams every base SearchParameter (code, base, type, expression, target, ...)
  compartments the Patient compartment: resource type -> parameters
"""
import gzip, json, os, sys

src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'fhir', 'r4')
out = os.path.join(os.path.dirname(__file__), '..', 'crates', 'fhir-spec', 'data', 'r4.json.gz')

def load(name):
    with open(os.path.join(src, name), encoding='utf-8') as f:
        return json.load(f)

FHIR_TYPE_EXT = 'http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type'

def type_codes(el):
    codes = []
    for t in el.get('type', []):
        code = t['code']
        if code.startswith('http://hl7.org/fhirpath/System.'):
            for ext in t.get('extension', []):
                if ext['url'] == FHIR_TYPE_EXT:
                    code = ext.get('valueUrl') or ext.get('valueUri')
        codes.append(code)
    return codes

def ref_targets(el):
    targets = []
    for t in el.get('type', []):
        if t['code'] in ('Reference', 'canonical'):
            for p in t.get('targetProfile', []):
                targets.append(p.rsplit('/', 1)[-1])
    return targets

required_vs = set()
types = {}
for fname in ('profiles-types.json', 'profiles-resources.json'):
    for e in load(fname)['entry']:
        sd = e['resource']
        if sd['resourceType'] != 'StructureDefinition':
            continue
        if sd.get('fhirVersion', '4.0.1') != '4.0.1':
            continue  # later-version additions of the repackaging (e.g. SubscriptionStatus 4.3.0)
        if sd.get('derivation') == 'constraint' or sd['kind'] == 'logical':
            continue  # profiles such as SimpleQuantity are checked as their base type
        name = sd['id']
        kind = {'primitive-type': 'p', 'complex-type': 'c', 'resource': 'r'}[sd['kind']]
        base = sd.get('baseDefinition', '').rsplit('/', 1)[-1] or None
        def constraints(el):
            out = []
            for c in el.get('constraint', []):
                if c.get('severity') != 'error' or not c.get('expression') or c['key'] in ('ele-1', 'ext-1'):
                    continue  # ele-1 and ext-1 are checked by hand
                src = c.get('source', sd['url'])
                if src != sd['url'] and not src.endswith(('/DomainResource', '/Resource')):
                    continue  # inherited from the element's type: checked there
                out.append([c['key'], c['expression'], c.get('human', '')])
            return out
        root_constraints = constraints(sd['snapshot']['element'][0])
        summary = sorted({el['path'].split('.', 1)[1].replace('[x]', '') for el in sd['snapshot']['element'][1:]
                          if el.get('isSummary') and el['path'].count('.') == 1})
        elements = []
        for el in sd['snapshot']['element'][1:]:
            path = el['path'].split('.', 1)[1]
            if kind == 'p':
                continue  # primitives are checked by hand-written grammars
            binding = None
            b = el.get('binding')
            if b and b.get('strength') == 'required' and b.get('valueSet'):
                binding = b['valueSet'].split('|')[0]
                required_vs.add(binding)
            cref = el.get('contentReference')
            if cref:
                cref = cref.lstrip('#').split('.', 1)[1]
            item = [path, el.get('min', 0), el.get('max', '*'), type_codes(el), binding, ref_targets(el), cref, constraints(el)]
            while item and item[-1] in (None, []):
                item.pop()
            elements.append(item)
        types[name] = {'k': kind, 'b': base, 'a': bool(sd.get('abstract')), 'e': elements}
        if root_constraints:
            types[name]['c'] = root_constraints
        if kind == 'r' and summary:
            types[name]['s'] = summary

# ---- code systems and value sets
codesystems = {}
valuesets = {}
for fname in ('valuesets.json', 'v3-codesystems.json', 'v2-tables.json'):
    for e in load(fname)['entry']:
        r = e['resource']
        if r['resourceType'] == 'CodeSystem':
            codesystems[r['url']] = r
        elif r['resourceType'] == 'ValueSet':
            valuesets[r['url']] = r

def cs_concepts(cs):
    """{code: [child codes]} in a flat dict plus parent links for is-a."""
    flat = {}
    def walk(concepts, parent):
        for c in concepts:
            flat[c['code']] = parent
            walk(c.get('concept', []), c['code'])
    walk(cs.get('concept', []), None)
    return flat

class NotEnumerable(Exception):
    pass

def descendants(flat, root):
    result = {root}
    changed = True
    while changed:
        changed = False
        for code, parent in flat.items():
            if parent in result and code not in result:
                result.add(code); changed = True
    return result

def expand(url, seen=()):
    url = url.split('|')[0]
    if url in seen:
        raise NotEnumerable(url)
    vs = valuesets.get(url)
    if vs is None:
        raise NotEnumerable(url)
    codes = {}
    def add(system, cs):
        codes.setdefault(system, set()).update(cs)
    def part(inc):
        part_codes = {}
        system = inc.get('system')
        if system:
            if inc.get('concept'):
                part_codes[system] = {c['code'] for c in inc['concept']}
            else:
                cs = codesystems.get(system)
                if cs is None or cs.get('content') not in (None, 'complete'):
                    raise NotEnumerable(system)
                flat = cs_concepts(cs)
                selected = set(flat)
                for f in inc.get('filter', []):
                    if f['op'] in ('is-a', 'descendent-of') and f['property'] == 'concept':
                        d = descendants(flat, f['value'])
                        if f['op'] == 'descendent-of':
                            d.discard(f['value'])
                        selected &= d
                    else:
                        raise NotEnumerable(system)
                part_codes[system] = selected
        for sub in inc.get('valueSet', []):
            inner = expand(sub, seen + (url,))
            if system:
                part_codes = {s: part_codes.get(s, set()) & inner.get(s, set()) for s in part_codes}
            else:
                for s, cs in inner.items():
                    part_codes.setdefault(s, set()).update(cs)
        return part_codes
    compose = vs.get('compose')
    if not compose:
        raise NotEnumerable(url)
    for inc in compose.get('include', []):
        for s, cs in part(inc).items():
            add(s, cs)
    for exc in compose.get('exclude', []):
        for s, cs in part(exc).items():
            codes.get(s, set()).difference_update(cs)
    return codes

vs_out = {}
for url in sorted(required_vs):
    try:
        vs_out[url] = {s: sorted(c) for s, c in expand(url).items()}
    except NotEnumerable:
        vs_out[url] = None

# ---- search parameters
params = []
for e in load('search-parameters.json')['entry']:
    r = e['resource']
    if r['resourceType'] != 'SearchParameter':
        continue
    p = {'id': r['id'], 'url': r['url'], 'code': r['code'], 'base': r['base'], 'type': r['type']}
    for k in ('expression', 'target', 'multipleOr', 'multipleAnd', 'comparator', 'modifier', 'chain'):
        if k in r:
            p[k] = r[k]
    if 'component' in r:
        p['component'] = [{'definition': c['definition'], 'expression': c['expression']} for c in r['component']]
    params.append(p)

comp = load('compartmentdefinition-patient.json')
compartment = {res['code']: res.get('param', []) for res in comp['resource']}

data = {'version': '4.0.1', 'types': types, 'valueSets': vs_out, 'searchParams': params,
        'compartments': {'Patient': compartment}}
raw = json.dumps(data, separators=(',', ':'), sort_keys=True).encode('utf-8')
with gzip.GzipFile(out, 'wb', mtime=0) as f:
    f.write(raw)
print(f'{out}: {len(types)} types, {len(vs_out)} required value sets '
      f'({sum(v is None for v in vs_out.values())} not enumerable), {len(params)} search parameters, '
      f'{len(raw)} bytes raw, {os.path.getsize(out)} gzipped')
