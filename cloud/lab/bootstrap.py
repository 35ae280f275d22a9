#!/usr/bin/python3
"""Idempotent bootstrap of the paasgen OpenStack lab (used by scripts/openstack-lab).

  bootstrap.py identity   -> service project/users, catalog, paasgen project/user
  bootstrap.py resources  -> flavors, image debian-12, provider network "public"

Reads OSLAB_DIR, OSLAB_ADMIN_PASSWORD, OSLAB_SERVICE_PASSWORD,
OSLAB_PAASGEN_PASSWORD from the environment. Talks only to 127.0.0.1.
"""
import os
import sys

import openstack

D = os.environ['OSLAB_DIR']
ADMIN_PW = os.environ['OSLAB_ADMIN_PASSWORD']
SERVICE_PW = os.environ['OSLAB_SERVICE_PASSWORD']
PAASGEN_PW = os.environ['OSLAB_PAASGEN_PASSWORD']
KEYSTONE = 'http://127.0.0.1:5000/v3'
REGION = 'RegionOne'

SERVICES = [
    # name, type, url
    ('keystone', 'identity', 'http://127.0.0.1:5000/v3'),
    ('placement', 'placement', 'http://127.0.0.1:8778'),
    ('glance', 'image', 'http://127.0.0.1:9292'),
    ('neutron', 'network', 'http://127.0.0.1:9696'),
    ('nova', 'compute', 'http://127.0.0.1:8774/v2.1'),
]
SERVICE_USERS = ['nova', 'neutron', 'glance', 'placement']
FLAVORS = [
    # name, vcpus, ram MB, disk GB
    ('m1.tiny', 1, 512, 1),
    ('m1.small', 1, 2048, 20),
    ('m1.medium', 2, 4096, 40),
    ('m1.large', 4, 8192, 80),
    ('m1.xlarge', 8, 16384, 160),
]


def log(msg):
    print('bootstrap: ' + msg, flush=True)


def connect():
    return openstack.connect(
        auth_url=KEYSTONE, username='admin', password=ADMIN_PW,
        project_name='admin', user_domain_name='Default',
        project_domain_name='Default', region_name=REGION,
        interface='public', identity_api_version='3')


def ensure_user(conn, name, password, default_project=None):
    user = next(iter(conn.identity.users(name=name, domain_id='default')), None)
    if user is None:
        attrs = dict(name=name, password=password, domain_id='default')
        if default_project is not None:
            attrs['default_project_id'] = default_project.id
        user = conn.identity.create_user(**attrs)
        log('created user %s' % name)
    elif not password_works(name, password):
        # only when it changed: a password update revokes the user's tokens
        conn.identity.update_user(user, password=password)
        log('updated password of user %s' % name)
    return user


def password_works(name, password):
    from keystoneauth1 import exceptions
    from keystoneauth1.identity import v3
    from keystoneauth1 import session
    auth = v3.Password(auth_url=KEYSTONE, username=name, password=password,
                       user_domain_id='default')
    try:
        session.Session(auth=auth).get_token()
        return True
    except exceptions.Unauthorized:
        return False


def ensure_project(conn, name, description):
    project = next(iter(conn.identity.projects(name=name,
                                               domain_id='default')), None)
    if project is None:
        project = conn.identity.create_project(
            name=name, domain_id='default', description=description)
        log('created project %s' % name)
    return project


def ensure_role(conn, name):
    role = next(iter(conn.identity.roles(name=name)), None)
    if role is None:
        role = conn.identity.create_role(name=name)
    return role


def identity(conn):
    admin_role = ensure_role(conn, 'admin')
    member_role = ensure_role(conn, 'member')
    ensure_role(conn, 'reader')
    service_role = ensure_role(conn, 'service')
    service = ensure_project(conn, 'service', 'OpenStack services')
    for name in SERVICE_USERS:
        user = ensure_user(conn, name, SERVICE_PW)
        conn.identity.assign_project_role_to_user(service, user, admin_role)
        conn.identity.assign_project_role_to_user(service, user, service_role)
    existing = {(s.type): s for s in conn.identity.services()}
    endpoints = list(conn.identity.endpoints())
    for name, stype, url in SERVICES:
        svc = existing.get(stype)
        if svc is None:
            svc = conn.identity.create_service(name=name, type=stype,
                                               is_enabled=True)
            log('created service %s' % name)
        for iface in ('public', 'internal', 'admin'):
            eps = [e for e in endpoints
                   if e.service_id == svc.id and e.interface == iface]
            if eps:
                if eps[0].url != url:
                    conn.identity.update_endpoint(eps[0], url=url)
                continue
            conn.identity.create_endpoint(service_id=svc.id, interface=iface,
                                          url=url, region_id=REGION)
    paasgen = ensure_project(conn, 'paasgen', 'paasgen launch tests')
    user = ensure_user(conn, 'paasgen', PAASGEN_PW, default_project=paasgen)
    conn.identity.assign_project_role_to_user(paasgen, user, member_role)
    with open(os.path.join(D, 'run', 'paasgen-project-id'), 'w') as f:
        f.write(paasgen.id + '\n')
    log('identity ready (project paasgen = %s)' % paasgen.id)


def resources(conn):
    for name, vcpus, ram, disk in FLAVORS:
        if conn.compute.find_flavor(name, ignore_missing=True) is None:
            conn.compute.create_flavor(name=name, vcpus=vcpus, ram=ram,
                                       disk=disk, is_public=True)
            log('created flavor %s' % name)

    image = conn.image.find_image('debian-12', ignore_missing=True)
    if image is not None and image.status != 'active':
        conn.image.delete_image(image)
        image = None
    if image is None:
        path = os.path.join(D, 'glance', 'debian-12.raw')
        if not os.path.exists(path):
            with open(path, 'wb') as f:
                f.truncate(1024 * 1024)
        with open(path, 'rb') as f:
            data = f.read()
        image = conn.image.create_image(
            name='debian-12', disk_format='raw', container_format='bare',
            visibility='public', data=data, os_distro='debian',
            os_version='12', allow_duplicates=True)
        log('created image debian-12 (%s)' % image.id)

    net = conn.network.find_network('public', ignore_missing=True)
    if net is None:
        net = conn.network.create_network(
            name='public', is_router_external=True, is_shared=True,
            provider_network_type='flat', provider_physical_network='public',
            description='lab provider network (no dataplane)')
        log('created network public')
    subnet = conn.network.find_subnet('public-subnet', ignore_missing=True)
    if subnet is None:
        conn.network.create_subnet(
            name='public-subnet', network_id=net.id, ip_version=4,
            cidr='203.0.113.0/24', gateway_ip='203.0.113.1',
            enable_dhcp=False,
            allocation_pools=[{'start': '203.0.113.100',
                               'end': '203.0.113.250'}])
        log('created subnet public-subnet 203.0.113.0/24')
    log('resources ready')


def computes(conn, want=3):
    """Exit 0 when `want` nova-compute services are up and in placement."""
    up = sorted(s.host for s in conn.compute.services(binary='nova-compute')
                if s.state == 'up' and s.status == 'enabled')
    rps = sorted(rp.name for rp in conn.placement.resource_providers())
    print('computes up: %s; placement resource providers: %s'
          % (', '.join(up) or '-', ', '.join(rps) or '-'))
    if len(up) < want or len(rps) < want:
        sys.exit(1)


def main():
    what = sys.argv[1:] or ['identity', 'resources']
    conn = connect()
    for step in what:
        {'identity': identity, 'resources': resources,
         'computes': computes}[step](conn)


if __name__ == '__main__':
    main()
