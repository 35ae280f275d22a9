"""ML2 mechanism driver for paasgen's OpenStack lab (scripts/openstack-lab).

The lab runs neutron-server without any L2 agent, so none of Neutron's
shipped mechanism drivers will bind a port. This driver binds every port that
has a host (binding:host_id, set by nova-compute) to the first segment offered,
with vif_type "ovs", and marks the port ACTIVE at bind time, so servers built
by the fake virt driver get ACTIVE ports without any dataplane.

With no L3 agent either, it also sets a floating IP's status the way an agent
would report it: ACTIVE while associated with a port, DOWN otherwise.
"""

from neutron_lib.api.definitions import portbindings
from neutron_lib.callbacks import events
from neutron_lib.callbacks import registry
from neutron_lib.callbacks import resources
from neutron_lib import constants
from neutron_lib.plugins import constants as plugin_constants
from neutron_lib.plugins import directory
from neutron_lib.plugins.ml2 import api
from oslo_log import log as logging

LOG = logging.getLogger(__name__)


class LabMechanismDriver(api.MechanismDriver):
    """Bind everything, no agent needed."""

    def initialize(self):
        LOG.info("paasgen lab ML2 mechanism driver loaded: binding every "
                 "segment with vif_type ovs, no agents")
        for event in (events.AFTER_CREATE, events.AFTER_UPDATE):
            registry.subscribe(self._floatingip_changed,
                               resources.FLOATING_IP, event)

    def _floatingip_changed(self, resource, event, trigger, payload=None):
        try:
            fip = payload.latest_state
            want = (constants.FLOATINGIP_STATUS_ACTIVE if fip.get('port_id')
                    else constants.FLOATINGIP_STATUS_DOWN)
            if fip.get('status') != want:
                l3 = directory.get_plugin(plugin_constants.L3)
                l3.update_floatingip_status(payload.context, fip['id'], want)
        except Exception:  # never break the API call for a status
            LOG.exception("could not set floating IP status")

    @property
    def connectivity(self):
        return portbindings.CONNECTIVITY_L2

    def bind_port(self, context):
        vnic_type = context.current.get(portbindings.VNIC_TYPE,
                                        portbindings.VNIC_NORMAL)
        for segment in context.segments_to_bind:
            context.set_binding(
                segment[api.ID],
                portbindings.VIF_TYPE_OVS,
                {portbindings.CAP_PORT_FILTER: True,
                 portbindings.OVS_HYBRID_PLUG: False,
                 portbindings.VIF_DETAILS_CONNECTIVITY:
                     portbindings.CONNECTIVITY_L2},
                status=constants.PORT_STATUS_ACTIVE)
            LOG.debug("Bound port %(port)s (vnic %(vnic)s) on host %(host)s "
                      "to segment %(seg)s",
                      {'port': context.current['id'], 'vnic': vnic_type,
                       'host': context.host, 'seg': segment[api.ID]})
            return
